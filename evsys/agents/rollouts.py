"""What every backend's ``agent_rl`` shares: groups of episodes, their rewards, advantages and
the step's metrics."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from evsys.agents.episode import Act, Episode, run_episodes
from evsys.errors import DataError
from evsys.fan_out import map_in_order
from evsys.protocols import Row
from evsys.registry import ENVIRONMENTS
from evsys.rows import prompt_text


def play_groups(
    batch: Sequence[Row], cfg: Any, act: Act, verifier: Any, tokenizer: Any = None
) -> list[list[Episode]]:
    """``group_size`` episodes of every task in ``batch``, run together and rewarded."""
    tasks = [row for row in batch for _ in range(cfg.group_size)]
    episodes = play_episodes(tasks, cfg, act, verifier, tokenizer)
    size = cfg.group_size
    return [episodes[i : i + size] for i in range(0, len(episodes), size)]


def play_episodes(
    tasks: Sequence[Row], cfg: Any, act: Act, verifier: Any, tokenizer: Any = None
) -> list[Episode]:
    """One episode per task, in ``cfg.environment``, within ``cfg``'s limits, rewarded by the
    environment or, when given, by ``verifier`` on the episode's last turn."""
    spec = cfg.environment
    episodes = run_episodes(
        tasks,
        lambda: ENVIRONMENTS.build(spec.kind, spec.params),
        act,
        max_turns=cfg.max_turns,
        max_tokens=cfg.max_tokens,
        max_turn_tokens=cfg.max_turn_tokens,
        tokenizer=tokenizer,
    )
    if verifier is not None:
        scored = [e for e in episodes if e.status != "failed"]

        def score(episode: Episode) -> float:
            return verifier.verify(
                prompt=_prompt(episode.task), completion=episode.last_action, target=episode.task
            ).reward

        # Side by side: a judge model's replies do not wait on each other.
        for episode, reward in zip(scored, map_in_order(score, scored), strict=True):
            episode.reward = reward
    return episodes


def group_advantages(group: Sequence[Episode]) -> list[float]:
    """Each episode's reward minus its group's mean (all zero: the group teaches nothing). A
    failed episode gets 0 and stays out of the mean: the environment failed, not the model."""
    rewards = [e.reward for e in group if e.status != "failed"]
    mean = statistics.fmean(rewards) if rewards else 0.0
    return [0.0 if e.status == "failed" else e.reward - mean for e in group]


def step_metrics(groups: Sequence[Sequence[Episode]]) -> dict[str, float]:
    """One step's episode metrics (``train/failed_episodes`` and ``…truncated…`` are counts)."""
    episodes = [e for group in groups for e in group]
    rewards = [e.reward for e in episodes]
    return {
        "train/reward_mean": statistics.fmean(rewards),
        "train/reward_std": statistics.pstdev(rewards),
        "train/frac_zero_std_groups": statistics.fmean(
            float(len({e.reward for e in group}) == 1) for group in groups
        ),
        "train/episode_turns": statistics.fmean(e.turns for e in episodes),
        "train/model_tokens": statistics.fmean(e.model_tokens for e in episodes),
        "train/failed_episodes": float(sum(e.status == "failed" for e in episodes)),
        "train/truncated_episodes": float(sum(e.status == "truncated" for e in episodes)),
    }


def final_metrics(last: dict[str, float], failed_total: float, steps: int) -> dict[str, float]:
    """The run's result: the last step's reward and turns, failed episodes over the run."""
    return {
        "train/steps": float(steps),
        "train/final_reward_mean": last.get("train/reward_mean", 0.0),
        "train/final_episode_turns": last.get("train/episode_turns", 0.0),
        "train/failed_episodes": failed_total,
    }


def _prompt(task: Row) -> str:
    try:
        return prompt_text(task)
    except DataError:
        return ""
