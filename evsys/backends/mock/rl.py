"""RL on the mock backend: group sampling, verifier rewards, group-centred advantages.

The policy answers a prompt correctly with probability ``confidence[prompt]``; a group whose
completions disagree pushes that probability towards the rewarded answers, a group that agrees
teaches nothing (as in GRPO, where its advantages are all zero).
"""

from __future__ import annotations

import random
import statistics
from typing import Any

from evsys.algorithms.rl import RL
from evsys.backends.mock.images import seen_prompt
from evsys.backends.mock.inference import MockInferenceClient
from evsys.backends.mock.policy import MockPolicy, stable_seed
from evsys.errors import DataError
from evsys.protocols import RunContext, RunResult
from evsys.registry import register_algorithm
from evsys.rows import assistant_text
from evsys.task_verifiers import rollout_verifier
from evsys.training import is_save_step, iterate_batches, progress_bar

INITIAL_CONFIDENCE = (0.1, 0.4)
"""Range of the base policy's chance of answering each prompt right."""


@register_algorithm("rl", backend="mock")
class MockRL:
    def __init__(self, **params: Any):
        self.cfg = RL.Config(**params)

    def train(self, ctx: RunContext) -> RunResult:
        cfg, backend = self.cfg, ctx.backend
        rng = random.Random(stable_seed("mock_rl", ctx.seed))
        verifier = rollout_verifier(cfg.verifier)
        policy = ctx.handles.get("policy") or MockPolicy(
            capacity=backend.cfg.capacity_per_rank * cfg.lora_rank
        )
        step_size = min(1.0, 0.5 * cfg.learning_rate / 1e-5)
        mean_reward, done = 0.0, 0

        with progress_bar("mock rl", cfg.max_steps) as advance:
            batches = iterate_batches(ctx.train_rows, cfg.batch_size, cfg.max_steps, ctx.seed)
            for step, batch in enumerate(batches, start=1):
                backend.check_step(step)
                rewards, zero_std_groups = [], 0
                for row in batch:
                    prompt, answer = seen_prompt(row), _reference_answer(row)
                    if prompt not in policy.answers:
                        low, high = INITIAL_CONFIDENCE
                        policy.learn(prompt, answer, rng.uniform(low, high), rng)
                    group = [
                        policy.generate(prompt, rng, greedy=False) for _ in range(cfg.group_size)
                    ]
                    group_rewards = [
                        verifier.verify(prompt=prompt, completion=c, target=row).reward
                        for c in group
                    ]
                    rewards += group_rewards
                    zero_std_groups += len(set(group_rewards)) == 1
                    _update(policy, prompt, group_rewards, step_size)
                mean_reward = statistics.fmean(rewards)
                metrics = {
                    "train/reward_mean": mean_reward,
                    "train/reward_std": statistics.pstdev(rewards),
                    "train/frac_zero_std_groups": zero_std_groups / len(batch),
                    "train/lr": cfg.learning_rate,
                }
                if step % cfg.log_every == 0 or step == cfg.max_steps:
                    ctx.log_store.log_metrics(metrics, step=step)
                if is_save_step(step, cfg.save_every):
                    path = policy.save(ctx.checkpoint_dir / f"step_{step}")
                    ctx.log_store.log_artifact(f"checkpoint_step_{step}", str(path))
                ctx.validate(step, lambda: MockInferenceClient.for_policy(policy))
                advance(reward=mean_reward)
                done = step
                if ctx.should_stop:  # a callback asked: the final checkpoint is this step's
                    break

        final = policy.save(ctx.checkpoint_dir / "final")
        ctx.log_store.log_artifact("final_checkpoint", str(final))
        return RunResult(
            run_id=ctx.run_id,
            status="completed",
            metrics={
                "train/final_reward_mean": mean_reward,
                "train/steps": float(done),
                **verifier.judge_usage(),  # an LLM judge's cost and latency, if one rewarded
            },
            artifacts={"final_checkpoint": str(final)},
        )


def _reference_answer(row: dict[str, Any]) -> str:
    """The answer the toy policy can learn to give: the row's own (its ``answer`` key, which a
    harbor task's metadata may hold too: for a sandbox task, a solution that passes)."""
    try:
        return assistant_text(row)
    except DataError:
        raise DataError(
            f"the mock policy learns from a reference answer, and row {row.get('id')!r} has "
            "none: give it an 'answer' (a harbor task: metadata.answer, for a sandbox task a "
            "solution that passes its tests)"
        ) from None


def _update(policy: MockPolicy, prompt: str, rewards: list[float], step_size: float) -> None:
    """Raise the chance of the right answer by the mean advantage of the better samples."""
    mean = statistics.fmean(rewards)
    advantages = [r - mean for r in rewards if r > mean]
    if not advantages:
        return  # every sample scored alike: no learning signal
    p = policy.confidence[prompt]
    policy.confidence[prompt] = min(0.99, p + step_size * statistics.fmean(advantages) * (1 - p))
