"""Agent RL on the mock backend: a toy policy that learns which move to make at each turn.

The environment proposes a few labelled moves each turn (its ``candidate_actions``); the policy
picks one from a softmax over a preference per (turn, label), and every episode's group-centred
advantage moves the preferences of the moves it made (the policy gradient of a softmax). So the
reward of an environment where some sequence of moves wins rises over steps, as on a real model.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evsys.agents.episode import Action, Episode
from evsys.agents.rollouts import final_metrics, group_advantages, play_groups, step_metrics
from evsys.algorithms.agent_rl import AgentRL
from evsys.backends.mock.policy import MockPolicy, stable_seed
from evsys.errors import ConfigError, Problem
from evsys.files import write_text_atomically
from evsys.protocols import RunContext, RunResult
from evsys.registry import ENVIRONMENTS, register_algorithm
from evsys.task_verifiers import rollout_verifier
from evsys.training import is_save_step, iterate_batches, progress_bar

CHECKPOINT_FILE = "mock_agent_policy.json"


@dataclass
class MockAgentPolicy:
    preferences: dict[str, float] = field(default_factory=dict)
    """Logit of each move, keyed ``<turn>|<label>``."""

    def probabilities(self, turn: int, labels: list[str]) -> list[float]:
        logits = [self.preferences.get(f"{turn}|{label}", 0.0) for label in labels]
        top = max(logits)
        weights = [math.exp(x - top) for x in logits]
        return [w / sum(weights) for w in weights]

    def reinforce(self, moves: list[tuple[int, str, list[str]]], advantage: float, size: float):
        """Move each chosen label's logit up by the advantage (down for the others)."""
        for turn, chosen, labels in moves:
            for label, p in zip(labels, self.probabilities(turn, labels), strict=True):
                key = f"{turn}|{label}"
                grad = (1.0 if label == chosen else 0.0) - p
                self.preferences[key] = self.preferences.get(key, 0.0) + size * advantage * grad

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"preferences": self.preferences}, sort_keys=True)
        write_text_atomically(path / CHECKPOINT_FILE, text)

    @classmethod
    def load(cls, checkpoint: str | None) -> MockAgentPolicy:
        """The policy saved in ``checkpoint``; a fresh one where it holds none (a checkpoint
        of another recipe)."""
        path = Path(checkpoint or "") / CHECKPOINT_FILE
        if checkpoint is None or not path.is_file():
            return cls()
        return cls(json.loads(path.read_text())["preferences"])


@register_algorithm("agent_rl", backend="mock")
class MockAgentRL:
    def __init__(self, **params: Any):
        self.cfg = AgentRL.Config(**params)

    def train(self, ctx: RunContext) -> RunResult:
        cfg = self.cfg
        _check_candidate_actions(cfg.environment.kind, cfg.environment.params)
        rng = random.Random(stable_seed("mock_agent_rl", ctx.seed))
        verifier = rollout_verifier(cfg.verifier) if cfg.verifier is not None else None
        policy = MockAgentPolicy.load(ctx.config.model.load_checkpoint_path)
        step_size = cfg.learning_rate / 1e-5
        moves: dict[int, list[tuple[int, str, list[str]]]] = {}

        def act(episodes: list[Episode], budgets: list[int]) -> list[Action]:
            actions = []
            for episode, budget in zip(episodes, budgets, strict=True):
                choices = episode.env.candidate_actions()
                labels = sorted(choices)
                probabilities = policy.probabilities(episode.turns, labels)
                label = rng.choices(labels, weights=probabilities)[0]
                moves.setdefault(id(episode), []).append((episode.turns, label, labels))
                words = choices[label].split()
                actions.append(Action(" ".join(words[:budget])))  # the budget counts words
            return actions

        metrics: dict[str, float] = {}
        failed = 0.0
        with progress_bar("mock agent rl", cfg.max_steps) as advance:
            batches = iterate_batches(ctx.train_rows, cfg.batch_size, cfg.max_steps, ctx.seed)
            for step, batch in enumerate(batches, start=1):
                ctx.backend.check_step(step)
                moves.clear()
                groups = play_groups(batch, cfg, act, verifier)
                for group in groups:
                    for episode, advantage in zip(group, group_advantages(group), strict=True):
                        policy.reinforce(moves.get(id(episode), []), advantage, step_size)
                metrics = step_metrics(groups) | {"train/lr": cfg.learning_rate}
                failed += metrics["train/failed_episodes"]
                if step % cfg.log_every == 0 or step == cfg.max_steps:
                    ctx.log_store.log_metrics(metrics, step=step)
                if is_save_step(step, cfg.save_every):
                    policy.save(ctx.checkpoint_dir / f"step_{step}")
                advance(reward=metrics["train/reward_mean"])

        final = ctx.checkpoint_dir / "final"
        policy.save(final)
        # The single-turn policy too, untouched: eval and later phases load it from here.
        capacity = ctx.backend.cfg.capacity_per_rank * cfg.lora_rank
        (ctx.handles.get("policy") or MockPolicy(capacity=capacity)).save(final)
        ctx.log_store.log_artifact("final_checkpoint", str(final))
        return RunResult(
            run_id=ctx.run_id,
            status="completed",
            metrics=final_metrics(metrics, failed, cfg.max_steps),
            artifacts={"final_checkpoint": str(final)},
        )


def _check_candidate_actions(kind: str, params: dict[str, Any]) -> None:
    """The toy policy chooses among the environment's own moves: refuse one that has none."""
    if not callable(getattr(ENVIRONMENTS.get(kind), "candidate_actions", None)):
        raise ConfigError(
            Problem(
                path="algorithm.params.environment.kind",
                message=f"environment '{kind}' has no candidate_actions(), the moves the mock "
                "backend's toy policy chooses among; give it one, or run it on backend=local "
                "or backend=tinker",
                value=kind,
            )
        )
