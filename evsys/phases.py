"""Training phases: one recipe run inside another, starting from a checkpoint.

Chained recipes (``combo``, ``sdft``'s rounds, continual stages) are written once for every
backend through two things each backend already has: ``prepare(model=...)`` honours
``model.load_checkpoint_path``, and the recipe's implementation returns
``artifacts["final_checkpoint"]`` (a recipe that moves no weights, ``updates_weights = False``
like ``gepa_prompt``, may return none: the model stays where the phase started). A phase
re-prepares the backend from the checkpoint it starts from (a fresh optimizer; the weights carry
over), trains in its own directory, and logs to the run's log store with its steps shifted after
the previous phases', so the curves run on.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from evsys.config import AlgorithmConfig
from evsys.errors import TrainingError
from evsys.protocols import LogStore, Row, RunContext, RunResult
from evsys.registry import resolve_algorithm


def run_phase(
    ctx: RunContext,
    *,
    recipe: str,
    params: dict[str, Any],
    rows: list[Row],
    start_from: str | None,
    directory: str,
    step_offset: int = 0,
) -> RunResult:
    """Train ``recipe`` with ``params`` on ``rows`` from checkpoint ``start_from`` (None: the base
    model) in ``run_dir/phases/<directory>``; raises when the phase does not complete."""
    model = ctx.config.model.model_copy(update={"load_checkpoint_path": start_from})
    config = ctx.config.model_copy(
        update={"model": model, "algorithm": AlgorithmConfig(kind=recipe, params=params)}
    )
    phase_dir = ctx.run_dir / "phases" / directory
    phase_dir.mkdir(parents=True, exist_ok=True)

    # Re-prepare in place: the runner tears down this same dict when the run ends.
    ctx.backend.teardown(ctx.handles)
    ctx.handles.update(ctx.backend.prepare(model=model, run_dir=phase_dir))

    implementation = resolve_algorithm(recipe, config.backend.kind)(**params)
    phase_ctx = dataclasses.replace(
        ctx,
        run_dir=phase_dir,
        config=config,
        train_rows=rows,
        log_store=StepOffsetLogStore(ctx.log_store, step_offset),
    )
    if ctx.callbacks is None:
        result = implementation.train(phase_ctx)
    else:
        with ctx.callbacks.steps_after(step_offset):
            result = implementation.train(phase_ctx)
    if result.status != "completed":
        raise TrainingError(f"phase {directory} ended {result.status}: {result.error}")
    # A recipe that moves no weights (gepa_prompt) leaves the model where the phase started.
    updates_weights = getattr(implementation, "updates_weights", True)
    if "final_checkpoint" not in result.artifacts and updates_weights:
        raise TrainingError(f"phase {directory} ({recipe}) saved no final_checkpoint")
    return result


def phase_steps(result: RunResult) -> int:
    return int(result.metrics.get("train/steps", 0))


def chained_result(
    ctx: RunContext,
    checkpoint: str | None,
    metrics: dict[str, float],
    artifacts: dict[str, str] | None = None,
) -> RunResult:
    """The run's result after its last phase: that phase's checkpoint stands for the run (None:
    no phase moved the weights); ``artifacts`` adds others (a tuned prompt)."""
    artifacts = dict(artifacts or {})
    if checkpoint is not None:
        artifacts["final_checkpoint"] = str(checkpoint)
    for name, path in artifacts.items():
        ctx.log_store.log_artifact(name, path)
    return RunResult(run_id=ctx.run_id, status="completed", metrics=metrics, artifacts=artifacts)


class StepOffsetLogStore:
    """A log store whose steps continue after ``offset`` (the steps of earlier phases)."""

    def __init__(self, inner: LogStore, offset: int):
        self.inner, self.offset = inner, offset

    def log_scalar(self, name: str, value: float, step: int) -> None:
        self.inner.log_scalar(name, value, step + self.offset)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.inner.log_metrics(metrics, step + self.offset)

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        self.inner.log_hyperparams(params)

    def log_artifact(self, name: str, path: str) -> None:
        self.inner.log_artifact(name, path)

    def close(self) -> None:
        """The run's log store outlives its phases: the runner closes it."""
