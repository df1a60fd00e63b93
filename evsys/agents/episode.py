"""Running episodes: the model and the environments take turns, a batch of episodes at a time.

Every backend runs the same loop; it only supplies ``act``, which writes the next turn of each
live episode (sampled together, so a backend batches them), within that episode's remaining
token budget. With a ``tokenizer`` the episode is also kept as tokens, exactly as the model saw
and wrote them: the opening prompt, then the completion with a mask that is 1 on the model's own
tokens and 0 on everything the template and the environment put between its turns.

Limits: ``max_turns`` model turns and ``max_tokens`` model tokens per episode; an episode that
reaches either before the environment says it is done ends ``truncated`` with the reward it has.
An environment that raises ends its episode ``failed`` with reward 0 (logged), never the run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from evsys.agents.protocol import Message
from evsys.agents.rendering import between_turns, opening_tokens
from evsys.protocols import Row

log = logging.getLogger(__name__)

Status = Literal["running", "done", "truncated", "failed"]


@dataclass
class Action:
    """One model turn: its text and, on token backends, the tokens sampled and their logprobs."""

    text: str
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)

    @property
    def length(self) -> int:
        """Tokens it costs the episode's budget (words where no tokens are known: mock)."""
        return len(self.tokens) if self.tokens else len(self.text.split())


@dataclass
class Episode:
    task: Row
    env: Any
    messages: list[Message] = field(default_factory=list)
    status: Status = "running"
    reward: float = 0.0
    turns: int = 0
    model_tokens: int = 0
    error: str | None = None
    prompt_tokens: list[int] = field(default_factory=list)
    """The opening messages as tokens, ending with the first assistant header."""
    completion_tokens: list[int] = field(default_factory=list)
    """Everything after the opening: the model's turns and what came between them."""
    mask: list[int] = field(default_factory=list)
    """Per completion token: 1 where the model wrote it (trained), 0 elsewhere."""
    logprobs: list[float] = field(default_factory=list)
    """Per completion token: the sampler's logprob on the model's tokens, 0 elsewhere."""

    @property
    def context(self) -> list[int]:
        """What the model reads before its next turn."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def last_action(self) -> str:
        """The model's last turn (what a verifier scores)."""
        for message in reversed(self.messages):
            if message.get("role") == "assistant":
                return str(message.get("content") or "")
        return ""

    def fail(self, what: str, exc: BaseException) -> None:
        """End the episode as failed: reward 0, and none of its tokens trained (the model is
        not to blame for the environment's error)."""
        self.status, self.reward = "failed", 0.0
        self.mask = [0] * len(self.mask)
        self.error = f"{what}: {type(exc).__name__}: {exc}"
        log.warning("episode of task %s failed in %s", _task_id(self.task), self.error)


Act = Callable[[list[Episode], list[int]], Sequence[Action]]
"""``act(episodes, budgets)``: the next turn of each live episode, at most ``budgets[i]``
tokens long."""


def run_episodes(
    tasks: Sequence[Row],
    make_env: Callable[[], Any],
    act: Act,
    *,
    max_turns: int,
    max_tokens: int,
    max_turn_tokens: int | None = None,
    tokenizer: Any = None,
) -> list[Episode]:
    """One episode per task (repeat a task for a group), all run to their end together; a turn
    writes at most ``max_turn_tokens`` (None: the rest of the episode's ``max_tokens``)."""
    turn_cap = max_turn_tokens or max_tokens
    episodes = [_open(task, make_env, tokenizer) for task in tasks]
    for _ in range(max_turns):
        live = [e for e in episodes if e.status == "running"]
        if not live:
            break
        actions = act(live, [min(turn_cap, max_tokens - e.model_tokens) for e in live])
        for episode, action in zip(live, actions, strict=True):
            _take_turn(episode, action, max_turns, max_tokens, tokenizer)
    return episodes


def _open(task: Row, make_env: Callable[[], Any], tokenizer: Any) -> Episode:
    episode = Episode(task=task, env=None)
    try:
        episode.env = make_env()
        episode.messages = list(episode.env.reset(task))
    except Exception as exc:  # the environment's fault: this episode fails, the run goes on
        episode.fail("reset", exc)
        return episode
    if tokenizer is not None:
        episode.prompt_tokens = opening_tokens(tokenizer, episode.messages)
    return episode


def _take_turn(
    episode: Episode, action: Action, max_turns: int, max_tokens: int, tokenizer: Any
) -> None:
    history = list(episode.messages)
    episode.messages.append({"role": "assistant", "content": action.text})
    episode.turns += 1
    episode.model_tokens += action.length
    episode.completion_tokens += action.tokens
    episode.mask += [1] * len(action.tokens)
    logprobs = list(action.logprobs) or [0.0] * len(action.tokens)
    episode.logprobs += logprobs[: len(action.tokens)]
    try:
        result = episode.env.step(action.text)
        reward, done = float(result.reward), bool(result.done)
        observation = {"role": result.role, "content": str(result.observation)}
    except Exception as exc:  # the environment's fault: this episode fails, the run goes on
        episode.fail(f"step {episode.turns}", exc)
        return
    episode.reward += reward
    if done:
        episode.status = "done"
        return
    if episode.turns >= max_turns or episode.model_tokens >= max_tokens:
        episode.status = "truncated"
        return
    if tokenizer is not None:
        glue = between_turns(tokenizer, history, action.text, action.tokens, observation)
        episode.completion_tokens += glue
        episode.mask += [0] * len(glue)
        episode.logprobs += [0.0] * len(glue)
    episode.messages.append(observation)


def _task_id(task: Row) -> str:
    for key in ("id", "task_id"):
        if task.get(key) is not None:
            return repr(task[key])
    return "(no id)"
