"""A multi-step game: guess a secret number; after each guess the environment says higher or
lower. Reward 1 for finding it within the episode's turns, else 0.

A task's secret is its ``secret`` (with optional ``low``/``high``); a row without one gets a
secret drawn from its id, so any dataset can seed the game.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Any

from pydantic import Field, model_validator

from evsys.agents.protocol import Message, StepResult
from evsys.config import Strict
from evsys.protocols import Row
from evsys.registry import register_environment

_GUESS = re.compile(r"<(?:guess|answer)>\s*(-?\d+)\s*</(?:guess|answer)>")


@register_environment("guess_number")
class GuessNumberEnv:
    """Find the secret number with higher/lower hints."""

    class Config(Strict):
        low: int = Field(1, description="Smallest possible secret, unless the task sets `low`.")
        high: int = Field(100, description="Largest possible secret, unless the task sets `high`.")

        @model_validator(mode="after")
        def _a_range(self) -> GuessNumberEnv.Config:
            if self.low > self.high:
                raise ValueError(f"low={self.low} is above high={self.high}")
            return self

    tools = ()

    def __init__(self, **params: Any):
        self.cfg = self.Config(**params)

    def reset(self, task: Row) -> list[Message]:
        self.low = int(task.get("low", self.cfg.low))
        self.high = int(task.get("high", self.cfg.high))
        if "secret" in task:
            self.secret = int(task["secret"])
        else:
            name = str(task.get("id", task.get("task_id", sorted(task.items()))))
            seed = hashlib.sha256(name.encode()).digest()  # stable across processes
            self.secret = random.Random(seed).randint(self.low, self.high)
        if not self.low <= self.secret <= self.high:
            raise ValueError(f"secret {self.secret} is outside [{self.low}, {self.high}]")
        self.rng = random.Random(self.secret)
        prompt = (
            f"I am thinking of a whole number from {self.low} to {self.high}. Guess it: reply "
            "with <guess>NUMBER</guess> and I will say higher or lower."
        )
        return [{"role": "user", "content": prompt}]

    def step(self, action: str) -> StepResult:
        found = _GUESS.search(action)
        if found is None:
            return StepResult("Reply with <guess>NUMBER</guess>.")
        guess = int(found.group(1))
        if guess == self.secret:
            return StepResult("Correct!", reward=1.0, done=True)
        if guess < self.secret:
            self.low = max(self.low, guess + 1)
            return StepResult("Higher.")
        self.high = min(self.high, guess - 1)
        return StepResult("Lower.")

    def candidate_actions(self) -> dict[str, str]:
        """For the mock backend's toy policy: halve the range that is left, guess anywhere in
        it, or guess its lowest number."""
        low, high = self.low, max(self.low, self.high)
        return {
            "bisect": f"<guess>{(low + high) // 2}</guess>",
            "random": f"<guess>{self.rng.randint(low, high)}</guess>",
            "lowest": f"<guess>{low}</guess>",
        }
