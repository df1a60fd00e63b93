"""Sampling from a mock checkpoint, for eval and benchmarks."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from evsys.backends.mock.images import seen_prompt
from evsys.backends.mock.policy import MockPolicy, in_context_examples, stable_seed
from evsys.config import Seed, Strict
from evsys.registry import register_inference


@register_inference("mock")
class MockInferenceClient:
    """Answers from a mock checkpoint; an untrained (checkpoint-less) model knows nothing.

    Like a real model it also learns in context: the worked examples of its system prompt
    (lines ``<prompt> => <answer>``) answer prompts like theirs, so a tuned prompt
    (``gepa_prompt``) can teach it what training would.
    """

    class Config(Strict):
        model: str | None = Field(None, description="Base model name (informational for mock).")
        checkpoint: str | None = Field(
            None, description="Mock checkpoint directory. None: the untrained base model."
        )
        seed: Seed = Field(0, description="Seeds sampling at temperature > 0 (0 … 2**32-1).")

    def __init__(self, **params: Any):
        self.cfg = self.Config(**params)
        self.policy = (
            MockPolicy.load(self.cfg.checkpoint) if self.cfg.checkpoint else MockPolicy(capacity=0)
        )

    @classmethod
    def for_policy(cls, policy: MockPolicy, seed: int = 0) -> MockInferenceClient:
        """A client of a live policy (in-loop validation); it sees the policy as it learns."""
        client = cls(seed=seed)
        client.policy = policy
        return client

    def generate(
        self,
        *,
        prompt: str | list[dict[str, Any]],
        max_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> str:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        text = seen_prompt({"messages": messages})
        system = "\n".join(
            m["content"]
            for m in messages
            if m.get("role") == "system" and isinstance(m.get("content"), str)
        )
        examples = in_context_examples(system)
        policy = self.policy.reading(examples) if examples else self.policy
        rng = random.Random(stable_seed(self.cfg.seed, text))
        completion = policy.generate(text, rng, greedy=temperature == 0)
        for s in stop or ():
            completion = completion.split(s)[0]
        return completion[: max_tokens * 8]  # roughly max_tokens tokens of text
