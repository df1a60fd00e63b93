"""``ExperimentRun``: one experiment and one run on the dashboard, as a context manager.

    client = DashboardClient()
    with ExperimentRun(client, experiment_name="sft_run_v9", recipe_kind="sft",
                       run_config={"lr": 1e-5}) as run:
        for step in range(1, 1001):
            run.log_step(step, loss=...)
        run.log_eval(metrics={"pass_at_1": 0.83}, benchmark_id="...")
        run.set_best_score(0.83)
        run.set_conclusion("rank-8 LoRA wins")

On exit the run (and the experiment it created) is marked ``completed``, or ``failed`` with the
error when the block raised, and the client is flushed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

from evsys.tracking.client import DashboardClient
from evsys.tracking.errors import DashboardClientError


class ExperimentRun:
    """``experiment_id=`` joins an existing experiment instead of creating one (a sweep's arm);
    ``run_id=`` reuses a run id, so a resumed arm appends to the same run by step."""

    def __init__(
        self,
        client: DashboardClient,
        experiment_name: str,
        recipe_kind: str | None = None,
        run_config: Mapping[str, Any] | None = None,
        hypothesis: str | None = None,
        *,
        success_metric: str | None = None,
        direction: str = "maximize",
        tags: Iterable[str] = (),
        project_goal_id: str | None = None,
        parent_experiment_id: str | None = None,
        experiment_id: str | None = None,
        run_name: str | None = None,
        run_id: str | None = None,
        generation_id: str | None = None,
        seed: int | None = None,
        flush_timeout: float = 30.0,
    ):
        self.client = client
        self.experiment_name, self.recipe_kind = experiment_name, recipe_kind
        self.run_config = dict(run_config or {})
        self.hypothesis, self.success_metric, self.direction = hypothesis, success_metric, direction
        self.tags = [*tags, *([recipe_kind] if recipe_kind else [])]
        self.project_goal_id, self.parent_experiment_id = project_goal_id, parent_experiment_id
        self.experiment_id, self.run_id, self.generation_id = experiment_id, run_id, generation_id
        self.run_name = run_name or (
            f"{experiment_name}-{recipe_kind}" if recipe_kind else experiment_name
        )
        self.seed, self.flush_timeout = seed, flush_timeout
        self._owns_experiment = experiment_id is None
        self._summary: dict[str, float] = {}  # the last value of every metric: the run's summary

    def __enter__(self) -> ExperimentRun:
        if self._owns_experiment:
            self.experiment_id = self.client.create_experiment(
                self.experiment_name,
                hypothesis=self.hypothesis,
                success_metric=self.success_metric,
                direction=self.direction,
                tags=self.tags,
                project_goal_id=self.project_goal_id,
                parent_experiment_id=self.parent_experiment_id,
                status="running",
            )
        self.run_id = self.client.create_run(
            self.experiment_id,
            self.run_name,
            id=self.run_id,
            status="running",
            config=self.run_config or None,
            generation_id=self.generation_id,
            seed=self.seed,
        )
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, _tb
    ) -> None:
        status = "completed" if exc_type is None else "failed"
        ending: dict[str, Any] = {"status": status}
        if exc is not None:
            ending["error"] = f"{exc_type.__name__}: {exc}"
        if self._finite_summary():
            ending["summary"] = self._finite_summary()
        self.client.update_run(self.run_id, **ending)
        if self._owns_experiment:
            self.client.update_experiment(self.experiment_id, status=status)
        if exc_type is None:
            self.client.flush(self.flush_timeout)  # a refused write raises here, not mid-training
        else:
            with suppress(DashboardClientError):  # the block's own error is the one to see
                self.client.flush(self.flush_timeout)

    def log_step(self, step: int, **metrics: float) -> None:
        self.client.log_step_metric(self.run_id, step, metrics)
        self._summary.update(metrics)

    def log_eval(
        self,
        metrics: Mapping[str, float],
        benchmark_id: str | None = None,
        *,
        name: str | None = None,
        step: int | None = None,
    ) -> str:
        eval_run_id = self.client.log_eval_run(
            self.run_id, metrics, name=name, step=step, benchmark_id=benchmark_id
        )
        self._summary.update(metrics)
        return eval_run_id

    def log_predictions(
        self, rows: Iterable[Mapping[str, Any]], *, eval_run_id: str | None = None
    ) -> None:
        self.client.log_predictions(self.run_id, rows, eval_run_id=eval_run_id)

    def set_best_score(self, score: float) -> None:
        """This run's score is the experiment's best: records both the score and the run."""
        self.client.update_experiment(self.experiment_id, best_score=score, best_run_id=self.run_id)

    def set_conclusion(self, conclusion: str) -> None:
        self.client.update_experiment(self.experiment_id, conclusion=conclusion)

    def update_experiment(self, **fields: Any) -> None:
        self.client.update_experiment(self.experiment_id, **fields)

    def update_generation(self, **fields: Any) -> None:
        if self.generation_id is None:
            raise ValueError(
                "update_generation: this run belongs to no generation (generation_id=)"
            )
        self.client.update_generation(self.generation_id, **fields)

    def update_run(self, **fields: Any) -> None:
        self.client.update_run(self.run_id, **fields)

    @contextmanager
    def benchmark(
        self, benchmark_id: str | None = None, *, name: str | None = None
    ) -> Iterator[dict[str, float]]:
        """Collect a benchmark's metrics in the yielded dict; recorded when the block ends
        without an error::

            with run.benchmark(name="gsm8k") as scores:
                scores["pass_at_1"] = evaluate(...)
        """
        metrics: dict[str, float] = {}
        yield metrics
        self.client.record_benchmark(
            self.run_id, metrics, benchmark_id=benchmark_id, benchmark_name=name
        )
        self._summary.update(metrics)

    def _finite_summary(self) -> dict[str, float]:
        return {
            k: v
            for k, v in self._summary.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        }
