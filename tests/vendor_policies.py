"""How the vendor test servers (:mod:`vendor_servers`) answer: policies that work the answer
out of the prompt, so a correct client scores what the policy deserves."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

_SUM = re.compile(r"What is (\d+) ([+-]) (\d+)\?")
Policy = Callable[[str, random.Random | None], str]
"""``(prompt, rng)`` → the answer; ``rng`` is None for greedy decoding (temperature 0)."""


def arithmetic_answer(prompt: str, rng: random.Random | None = None) -> str:
    found = _SUM.search(prompt)
    if not found:
        return "I do not know."
    a, b = int(found[1]), int(found[3])
    value = a + b if found[2] == "+" else a - b
    if rng is not None and rng.random() < 0.5:
        value += 1  # a sampled answer is wrong half the time: pass@k grows with k
    return f"<answer>{value}</answer>"


def mock_policy_answer(policy: Any) -> Policy:
    """Answers of a trained :class:`evsys.backends.mock.policy.MockPolicy`."""

    def answer(prompt: str, rng: random.Random | None) -> str:
        return policy.generate(prompt, rng or random.Random(0), greedy=rng is None)

    return answer


_JUDGED = re.compile(r"Response:\n(?P<response>.*)\n\nRubric:\n(?P<rubric>.*?)\n\n", re.DOTALL)


def rubric_judge(prompt: str, rng: random.Random | None = None) -> str:
    """A judge model (for the prompt of :data:`evsys.task_verifiers.JUDGE_PROMPT`): a rubric
    ``contains: TEXT`` scores 1 when the response holds TEXT, else 0; any other rubric gets a
    reply without a score. Prompts that are not a judge's are answered by arithmetic_answer."""
    found = _JUDGED.search(prompt)
    if found is None:
        return arithmetic_answer(prompt, rng)
    rubric = found["rubric"].strip()
    if not rubric.startswith("contains: "):
        return "The rubric is unclear to me, so I cannot decide."
    passed = rubric.removeprefix("contains: ") in found["response"]
    return f"Checked the response against the rubric. <answer>{int(passed)}</answer>"
