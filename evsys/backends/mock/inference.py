"""Sampling from a mock checkpoint, for eval and benchmarks."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from evsys.backends.mock.policy import MockPolicy, stable_seed
from evsys.config import Seed, Strict
from evsys.registry import register_inference
from evsys.rows import prompt_text


@register_inference("mock")
class MockInferenceClient:
    """Answers from a mock checkpoint; an untrained (checkpoint-less) model knows nothing."""

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
        text = prompt if isinstance(prompt, str) else prompt_text({"messages": prompt})
        rng = random.Random(stable_seed(self.cfg.seed, text))
        completion = self.policy.generate(text, rng, greedy=temperature == 0)
        for s in stop or ():
            completion = completion.split(s)[0]
        return completion[: max_tokens * 8]  # roughly max_tokens tokens of text
