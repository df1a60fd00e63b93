"""Pull the answer out of a completion and put answers in a comparable form.

Metrics and verifiers share these helpers so that "correct" means the same thing in an RL
reward, an eval score and a pass@k estimate.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from evsys.errors import DataError

ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
"""Matches one ``<answer>…</answer>``; group 1 is its content, possibly spanning lines."""
_QUOTE_PAIRS = {'"': '"', "'": "'", "`": "`", "\u201c": "\u201d", "\u2018": "\u2019"}


def extract_answer(text: str) -> str:
    """The stripped content of the last ``<answer>…</answer>`` in ``text``; else all of it, stripped.

    The last tag wins because models often restate the format ("reply as <answer>X</answer>")
    while reasoning, before giving the real answer.
    """
    found = ANSWER_TAG.findall(text)
    return (found[-1] if found else text).strip()


def cut_at_stops(text: str, stops: Sequence[str]) -> str:
    """``text`` up to the first of the stop strings it holds (all of it when it holds none)."""
    cuts = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return text[: min(cuts)] if cuts else text


def normalize(text: str, *, casefold: bool = True) -> str:
    """``' "Paris." '`` → ``'paris'``: casefold, collapse whitespace, drop wrapping quotes and a
    trailing period. ``casefold=False`` keeps the case (for case-sensitive comparisons)."""
    text = " ".join(text.split())
    if casefold:
        text = text.casefold()
    # The period may sit outside the quotes ("Paris".) or inside them ("Paris."): strip around both.
    text = text.removesuffix(".").strip()
    if len(text) >= 2 and _QUOTE_PAIRS.get(text[0]) == text[-1]:
        text = text[1:-1].strip()
    return text.removesuffix(".").strip()


TOOL_SLUG = "tool_slug"
"""The reference's name for a tool-selection row's answer (its eval compares predictions with
``tool_slug`` or ``answer``, and ``toolkit``)."""


def answer_key(row: Any, key: str = "answer") -> str:
    """``key``, or ``tool_slug`` where the row has no ``answer`` but that (the reference's rows)."""
    if key == "answer" and isinstance(row, dict) and key not in row and TOOL_SLUG in row:
        return TOOL_SLUG
    return key


def target_answer(target: Any) -> str:
    """The expected answer of a row's target: the scalar itself, ``target["answer"]``, or the
    reference's ``target["tool_slug"]``.

    A dict target may also carry ``toolkit`` and ``aliases``; only ``answer`` is returned here.
    """
    if isinstance(target, dict):
        if "answer" not in target and "inputs" in target and "expected" in target:
            target = {"answer": target["expected"]}  # a prompt-dataset row (PromptExample)
        if "answer" not in target and TOOL_SLUG in target:
            target = {"answer": target[TOOL_SLUG]}  # the reference's tool-selection rows
        if "answer" not in target:
            raise DataError(
                f"target {target!r} has no 'answer' key (keys: {', '.join(map(str, target))}); "
                "a dict target must look like {'answer': ..., 'toolkit': ..., 'aliases': [...]}"
            )
        target = target["answer"]
    if target is None:
        raise DataError("target answer is None; every scored row needs an expected answer")
    return str(target)


def is_correct(completion: Any, target: Any) -> bool:
    """Whether a completion's extracted answer equals the target's answer, after ``normalize``.

    ``None`` (a generation that failed) is never correct; other non-strings are compared as text.
    """
    if completion is None:
        return False
    return normalize(extract_answer(str(completion))) == normalize(target_answer(target))
