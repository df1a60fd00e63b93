"""The contract of an agent environment, in the spirit of harbor's agent harnesses.

A *task* (a data row) starts an *episode*: ``reset(task)`` gives the opening messages, then the
model and the environment take turns. Each model turn is one ``action`` (the text it wrote);
``step(action)`` answers with a :class:`StepResult`: what the model sees next, a reward, and
whether the episode is over. An environment offers ``tools`` the model may call by writing
``<tool>NAME: ARGUMENT</tool>`` (:mod:`evsys.agents.tools` parses and runs them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from evsys.protocols import Row

Message = dict[str, Any]


@dataclass
class StepResult:
    """The environment's answer to one action."""

    observation: str = ""
    """What the model reads next (ignored once ``done``)."""
    reward: float = 0.0
    """Added to the episode's reward (an episode's reward is the sum of its steps')."""
    done: bool = False
    role: Literal["user", "tool"] = "user"
    """The message role the observation comes in: ``tool`` for a tool's result."""
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Tool:
    """A function the model may call: ``<tool>name: argument</tool>`` → ``fn(argument)``."""

    name: str
    description: str
    fn: Callable[[str], str]


@runtime_checkable
class Environment(Protocol):
    """One episode's world: it opens with ``reset(task)`` and answers every action with ``step``.

    A fresh instance runs each episode, so state lives on ``self``. Raising from ``reset`` or
    ``step`` ends that episode as failed (reward 0, counted in ``train/failed_episodes``),
    never the run. The mock backend's toy policy also needs ``candidate_actions()``: a few
    labelled actions that make sense now (label → action text) that it learns to choose among::

        @register_environment("countdown")
        class Countdown:
            \"\"\"Say the numbers from `start` down to 1, one per turn.\"\"\"

            class Config(Strict):
                start: int = Field(3, ge=1, description="The first number to say.")

            tools = ()

            def __init__(self, **params):
                self.cfg = self.Config(**params)

            def reset(self, task: Row) -> list[Message]:
                self.next = self.cfg.start
                return [{"role": "user", "content": f"Count down from {self.next}."}]

            def step(self, action: str) -> StepResult:
                if action.strip() != str(self.next):
                    return StepResult("Wrong: start again.", done=True)
                self.next -= 1
                if self.next == 0:
                    return StepResult(reward=1.0, done=True)
                return StepResult("Next.")

            def candidate_actions(self) -> dict[str, str]:
                return {"right": str(self.next), "wrong": str(self.next + 1)}
    """

    tools: Sequence[Tool]

    def reset(self, task: Row) -> list[Message]: ...

    def step(self, action: str) -> StepResult: ...
