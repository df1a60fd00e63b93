"""SFT on the mock backend: each step memorises the batch's answers, loss falls as memory fills."""

from __future__ import annotations

import random
from typing import Any

from evsys.algorithms.sft import SFT
from evsys.backends.mock.backend import COST_PER_RANK_STEP
from evsys.backends.mock.images import seen_prompt
from evsys.backends.mock.inference import MockInferenceClient
from evsys.backends.mock.policy import MockPolicy, stable_seed
from evsys.protocols import RunContext, RunResult
from evsys.registry import register_algorithm
from evsys.rows import assistant_text
from evsys.training import (
    is_save_step,
    iterate_batches,
    progress_bar,
    scheduled_lr,
    total_steps,
)

# Loss of a row the policy cannot recall at all, and of one it has memorised.
UNKNOWN_LOSS, KNOWN_LOSS = 2.5, 0.05


@register_algorithm("sft", backend="mock")
class MockSFT:
    def __init__(self, **params: Any):
        self.cfg = SFT.Config(**params)

    def train(self, ctx: RunContext) -> RunResult:
        cfg, backend = self.cfg, ctx.backend
        rng = random.Random(stable_seed("mock_sft", ctx.seed))
        landscape = backend.cfg.landscape
        # On a landscape the memory holds every row: the rank acts through learn_probability.
        capacity = (
            len(ctx.train_rows) if landscape else backend.cfg.capacity_per_rank * cfg.lora_rank
        )
        policy = ctx.handles.get("policy") or MockPolicy(capacity=capacity)
        if landscape:  # a known smooth function of lr and rank (see evsys.backends.mock.backend)
            learn_probability = landscape.learn_probability(cfg.learning_rate, cfg.lora_rank)
        else:  # a higher learning rate memorises more of each batch
            learn_probability = min(1.0, 0.5 * cfg.learning_rate / 1e-4)
        steps = total_steps(len(ctx.train_rows), cfg.batch_size, cfg.num_epochs, cfg.max_steps)
        artifacts: dict[str, str] = {}
        loss, done = UNKNOWN_LOSS, 0

        with progress_bar("mock sft", steps) as advance:
            batches = iterate_batches(ctx.train_rows, cfg.batch_size, steps, ctx.seed)
            for step, batch in enumerate(batches, start=1):
                backend.check_step(step)
                losses = []
                for row in batch:
                    prompt, answer = seen_prompt(row), assistant_text(row)
                    losses.append(_row_loss(policy, prompt, answer))
                    if rng.random() < learn_probability:
                        policy.learn(prompt, answer, 1.0, rng)
                loss = sum(losses) / len(losses) + rng.uniform(0, 0.01)
                lr = scheduled_lr(cfg.learning_rate, cfg.lr_schedule, step, steps, cfg.warmup_ratio)
                if step % cfg.log_every == 0 or step == steps:
                    ctx.log_store.log_metrics(
                        {"train/loss": loss, "train/lr": lr, "train/memory": len(policy.answers)},
                        step=step,
                    )
                if is_save_step(step, cfg.save_every):
                    path = policy.save(ctx.checkpoint_dir / f"step_{step}")
                    ctx.log_store.log_artifact(f"checkpoint_step_{step}", str(path))
                ctx.validate(step, lambda: MockInferenceClient.for_policy(policy))
                advance(loss=loss)
                done = step
                if ctx.should_stop:  # a callback asked: the final checkpoint is this step's
                    break

        final = policy.save(ctx.checkpoint_dir / "final")
        artifacts["final_checkpoint"] = str(final)
        ctx.log_store.log_artifact("final_checkpoint", str(final))
        metrics = {"train/final_loss": loss, "train/steps": float(done)}
        if landscape:  # the known function's value, and the toy price of the run
            metrics["train/learn_probability"] = learn_probability
            metrics["train/cost_usd"] = cfg.lora_rank * done * COST_PER_RANK_STEP
        return RunResult(
            run_id=ctx.run_id,
            status="completed",
            metrics=metrics,
            artifacts=artifacts,
        )


def _row_loss(policy: MockPolicy, prompt: str, answer: str) -> float:
    """Low for a memorised row, lower the closer a remembered prompt with the same answer is."""
    known, sim = policy.recall(prompt)
    if known is None or policy.answers[known] != answer:
        return UNKNOWN_LOSS
    return KNOWN_LOSS if sim == 1.0 else UNKNOWN_LOSS * (1 - sim)
