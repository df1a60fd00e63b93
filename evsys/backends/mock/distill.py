"""Distillation on the mock backend: the student takes on the teacher policy's answers.

Each step the student answers the batch's prompts; where it disagrees with the teacher (a mock
checkpoint), it learns the teacher's answer with a probability that grows with the learning rate.
The loss is the fraction of the batch on which the two still disagree.
"""

from __future__ import annotations

import random
from typing import Any

from evsys.algorithms.distill import Distill
from evsys.backends.mock.images import seen_prompt
from evsys.backends.mock.inference import MockInferenceClient
from evsys.backends.mock.policy import MockPolicy, stable_seed
from evsys.errors import BackendError, ConfigError
from evsys.protocols import RunContext, RunResult
from evsys.registry import register_algorithm
from evsys.training import is_save_step, iterate_batches, progress_bar


@register_algorithm("distill", backend="mock")
class MockDistill:
    def __init__(self, **params: Any):
        self.cfg = Distill.Config(**params)

    def train(self, ctx: RunContext) -> RunResult:
        cfg, backend = self.cfg, ctx.backend
        teacher = _load_teacher(cfg.teacher_checkpoint)
        rng = random.Random(stable_seed("mock_distill", ctx.seed))
        student = ctx.handles.get("policy") or MockPolicy(
            capacity=backend.cfg.capacity_per_rank * cfg.lora_rank
        )
        learn_probability = min(1.0, 0.5 * cfg.learning_rate / 1e-4)
        loss, done = 1.0, 0

        with progress_bar("mock distill", cfg.max_steps) as advance:
            batches = iterate_batches(ctx.train_rows, cfg.batch_size, cfg.max_steps, ctx.seed)
            for step, batch in enumerate(batches, start=1):
                backend.check_step(step)
                disagreements = 0
                for row in batch:
                    prompt = seen_prompt(row)
                    target = teacher.generate(prompt, rng, greedy=True)
                    if student.generate(prompt, rng, greedy=False) != target:
                        disagreements += 1
                        if rng.random() < learn_probability:
                            student.learn(prompt, target, 1.0, rng)
                loss = disagreements / len(batch)
                if step % cfg.log_every == 0 or step == cfg.max_steps:
                    ctx.log_store.log_metrics(
                        {"train/loss": loss, "train/lr": cfg.learning_rate}, step=step
                    )
                if is_save_step(step, cfg.save_every):
                    path = student.save(ctx.checkpoint_dir / f"step_{step}")
                    ctx.log_store.log_artifact(f"checkpoint_step_{step}", str(path))
                ctx.validate(step, lambda: MockInferenceClient.for_policy(student))
                advance(loss=loss)
                done = step
                if ctx.should_stop:  # a callback asked: the final checkpoint is this step's
                    break

        final = student.save(ctx.checkpoint_dir / "final")
        ctx.log_store.log_artifact("final_checkpoint", str(final))
        return RunResult(
            run_id=ctx.run_id,
            status="completed",
            metrics={"train/final_loss": loss, "train/steps": float(done)},
            artifacts={"final_checkpoint": str(final)},
        )


def _load_teacher(checkpoint: str | None) -> MockPolicy:
    if checkpoint is None:
        raise ConfigError(
            "algorithm.params.teacher_checkpoint: the mock backend's teacher is a mock "
            "checkpoint (a run's checkpoints/final); set it"
        )
    try:
        return MockPolicy.load(checkpoint)
    except (OSError, ValueError, KeyError) as exc:
        raise BackendError(f"cannot load the mock teacher '{checkpoint}': {exc}") from exc
