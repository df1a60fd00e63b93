"""Continual learning: one training stage per dataset, each from the previous stage's weights.

``continual.datasets`` lists the stages in order. Each trains the run's recipe through
:func:`evsys.phases.run_phase` (the backend re-prepared from the previous stage's final checkpoint:
the weights carry over, the optimizer starts fresh) in ``phases/<i>_<name>/``. After every stage
the model is scored on every stage's eval set, the later stages' included, and on the ``test``
benchmarks, so the result shows skills accumulating and being forgotten stage by stage:

- ``stage/<i>_<name>/eval/<set>/<metric>``: the matrix, one row per stage, one column per set;
- ``eval/<set>/<metric>``, ``test/<bench>/<metric>``: after the last stage, as a plain run has;
- ``eval/<metric>``: the mean over the sets after the last stage (what a success metric ranks);
- ``continual/backward_transfer/<metric>``: the mean change of each earlier set's score from
  just after its own stage to the end (negative: forgetting).

With ``eval.baseline`` the starting model is scored first (``baseline/eval/<set>/<metric>``).
The matrix is also written as ``continual.md`` next to ``run_result.json``.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evsys.benchmarks import Benchmark, InLoopValidation
from evsys.callbacks import Callbacks
from evsys.config import ContinualStage, DataConfig, ExperimentConfig
from evsys.data.sources import apply_transforms, load_rows
from evsys.errors import ConfigError, Problem, TrainingError
from evsys.files import write_text_atomically
from evsys.phases import phase_steps, run_phase
from evsys.protocols import DataStore, LogStore, Row, RunContext, RunResult
from evsys.registry import BACKENDS
from evsys.report import eval_metric_names, format_matrix
from evsys.run.dependencies import ArmDependencies, TrainFn
from evsys.run.evaluation import best_effort, eval_rows, evaluate
from evsys.run.record import run_hyperparams
from evsys.task_verifiers import recipe_judge

log = logging.getLogger(__name__)

CONTINUAL_MD = "continual.md"
BEFORE = "before training"


@dataclass
class Stage:
    index: int
    spec: ContinualStage
    train_rows: list[Row]
    eval_rows: list[Row]

    @property
    def label(self) -> str:
        """``<i>_<name>``: its directory under ``phases/`` and its metric prefix."""
        return f"{self.index}_{self.spec.name}"

    @property
    def data(self) -> DataConfig:
        return DataConfig.model_validate(self.spec.model_dump(exclude={"name"}))


def load_stages(config: ExperimentConfig, store: DataStore) -> list[Stage]:
    """Every stage's training and eval rows, read before any stage trains (a bad path fails now).

    A stage's eval set is its ``eval_path``, else its training rows, at most ``eval.n_samples``.
    """
    assert config.continual is not None
    stages = []
    for index, spec in enumerate(config.continual.datasets):
        data = DataConfig.model_validate(spec.model_dump(exclude={"name"}))
        judge = recipe_judge(config.algorithm.params)  # an LLM-judged recipe takes judge tasks
        rows = apply_transforms(load_rows(data, store, judge=judge), data.transforms)
        # eval_rows reads eval.eval_data first: a stage's own held-out rows come before it.
        stage_config = config.model_copy(
            update={"data": data, "eval": config.eval.model_copy(update={"eval_data": None})}
        )
        stages.append(Stage(index, spec, rows, eval_rows(stage_config, store, rows)))
    return stages


def run_continual(
    config: ExperimentConfig,
    run_id: str,
    run_dir: Path,
    data_store: DataStore,
    log_store: LogStore,
    benchmarks: list[Benchmark],
    deps: ArmDependencies,
    callbacks: Callbacks | None = None,
) -> RunResult:
    """Train the stages in order, scoring after each; raises when a stage fails to train."""
    callbacks = callbacks or Callbacks()
    stages = load_stages(config, data_store)
    scorer = _Scorer(config, stages, benchmarks, deps)
    matrix: list[tuple[str, dict[str, float]]] = []
    metrics: dict[str, float] = {}
    if config.eval.baseline:
        before = scorer.score(config.model.load_checkpoint_path, run_dir / "baseline", "baseline")
        matrix.append((BEFORE, before))
        metrics |= {f"baseline/{k}": v for k, v in before.items()}
        log_store.log_metrics({f"baseline/{k}": v for k, v in before.items()}, step=0)

    train = (
        _InjectedStageTrainer(deps.train, config, run_dir)
        if deps.train is not None
        else _PhaseStageTrainer(
            config, run_id, run_dir, data_store, log_store, benchmarks, callbacks
        )
    )
    checkpoint, steps = config.model.load_checkpoint_path, 0
    trained: dict[str, float] = {}
    try:
        callbacks.train_begin()
        for stage in stages:
            log.info("continual stage %s: %d rows", stage.label, len(stage.train_rows))
            result = train(stage, checkpoint, steps)
            checkpoint, steps = result.artifacts["final_checkpoint"], steps + phase_steps(result)
            trained = result.metrics
            scores = scorer.score(checkpoint, run_dir / "phases" / stage.label, stage.label)
            matrix.append((stage.label, scores))
            prefixed = {f"stage/{stage.label}/{k}": v for k, v in {**trained, **scores}.items()}
            metrics |= prefixed
            log_store.log_metrics(
                {k: v for k, v in prefixed.items() if "/train/" not in k}, step=steps
            )
        callbacks.train_end()
    except BaseException:
        # The stages that did train stay on record (after a signal too); the runner records
        # the failure itself.
        write_text_atomically(run_dir / CONTINUAL_MD, render_matrix(config.name, stages, matrix))
        raise
    finally:
        train.close()

    final = matrix[-1][1]
    metrics |= trained | final | summary_metrics(stages, [s for _, s in matrix[-len(stages) :]])
    metrics["train/steps"] = float(steps)
    log_store.log_artifact("final_checkpoint", checkpoint)
    write_text_atomically(run_dir / CONTINUAL_MD, render_matrix(config.name, stages, matrix))
    extras: dict[str, Any] = dict(scorer.errors) | callbacks.record()
    extras["continual"] = {
        "stages": [stage.label for stage in stages],
        "eval_sets": [stage.spec.name for stage in stages],
        "rows": [{"after": after, "scores": scores} for after, scores in matrix],
    }
    return RunResult(
        run_id=run_id,
        status="completed",
        metrics=metrics,
        artifacts={"final_checkpoint": checkpoint},
        extras=extras,
    )


# -- training a stage ----------------------------------------------------------------------------


class _PhaseStageTrainer:
    """The run's recipe on the backend, one :func:`run_phase` per stage."""

    def __init__(
        self,
        config: ExperimentConfig,
        run_id: str,
        run_dir: Path,
        data_store: DataStore,
        log_store: LogStore,
        benchmarks: list[Benchmark],
        callbacks: Callbacks,
    ):
        backend = BACKENDS.build(config.backend.kind, config.backend.params)
        if getattr(backend, "launches_ranks", lambda: False)():
            raise ConfigError(
                Problem(
                    path="continual",
                    message="continual stages train in this process; data-parallel ranks "
                    "are not supported for them",
                    expected="backend.params.num_processes=1",
                )
            )
        # No handles yet: each stage prepares the backend from the checkpoint it starts at.
        self.ctx = RunContext(
            run_id=run_id,
            run_dir=run_dir,
            config=config,
            data_store=data_store,
            log_store=log_store,
            backend=backend,
            handles={},
            train_rows=[],
            validation=InLoopValidation(benchmarks, config.eval),
            callbacks=callbacks,
        )
        stages = [spec.name for spec in config.continual.datasets]
        log_store.log_hyperparams(run_hyperparams(config) | {"continual": stages})

    def __call__(self, stage: Stage, start_from: str | None, step_offset: int) -> RunResult:
        config = self.ctx.config
        result = run_phase(
            self.ctx,
            recipe=config.algorithm.kind,
            params=config.algorithm.params,
            rows=stage.train_rows,
            start_from=start_from,
            directory=stage.label,
            step_offset=step_offset,
        )
        self.close()  # the trained weights leave memory before the scoring client loads them
        return result

    def close(self) -> None:
        self.ctx.backend.teardown(self.ctx.handles)


class _InjectedStageTrainer:
    """An injected train function, called once per stage with that stage's config."""

    def __init__(self, train: TrainFn, config: ExperimentConfig, run_dir: Path):
        self.train, self.config, self.run_dir = train, config, run_dir

    def __call__(self, stage: Stage, start_from: str | None, step_offset: int) -> RunResult:
        model = self.config.model.model_copy(update={"load_checkpoint_path": start_from})
        stage_config = self.config.model_copy(
            update={"data": stage.data, "model": model, "continual": None}
        )
        stage_dir = self.run_dir / "phases" / stage.label
        stage_dir.mkdir(parents=True, exist_ok=True)
        result = self.train(stage_config, stage_dir)
        if result.status != "completed":
            raise TrainingError(f"stage {stage.label} ended {result.status}: {result.error}")
        if "final_checkpoint" not in result.artifacts:
            raise TrainingError(f"stage {stage.label} saved no final_checkpoint")
        return result

    def close(self) -> None:
        pass


# -- scoring ---------------------------------------------------------------------------------------


class _Scorer:
    """Scores a checkpoint on every stage's eval set and the test benchmarks, best effort."""

    def __init__(
        self,
        config: ExperimentConfig,
        stages: list[Stage],
        benchmarks: list[Benchmark],
        deps: ArmDependencies,
    ):
        self.config, self.stages, self.deps = config, stages, deps
        self.tests = [b for b in benchmarks if "test" in b.spec.tags]
        self.errors: dict[str, str] = {}

    def score(self, checkpoint: str | None, out_dir: Path, label: str) -> dict[str, float]:
        """``eval/<set>/<metric>`` and ``test/<bench>/<metric>``; predictions under ``out_dir``."""
        config, scores = self.config, {}
        scored = config.eval.enabled and config.eval.metrics
        if not scored and not self.tests:
            return {}
        client = None
        with best_effort(f"{label}_eval", config.name, self.errors):
            client = self.deps.inference_client(config, checkpoint)
        if client is None:
            return {}
        for stage in self.stages if scored else []:
            name = stage.spec.name
            with best_effort(f"{label}_eval_{name}", config.name, self.errors):
                found = evaluate(
                    config,
                    client,
                    stage.eval_rows,
                    out_dir / "eval" / name,
                    label=f"eval {name}",
                    errors=self.errors,
                )
                scores |= {f"eval/{name}/{k.removeprefix('eval/')}": v for k, v in found.items()}
        for benchmark in self.tests:
            with best_effort(f"{label}_benchmark_{benchmark.name}", config.name, self.errors):
                scores |= benchmark.score(
                    client,
                    config.eval,
                    split="test",
                    predictions_dir=out_dir / "benchmarks",
                    errors=self.errors,
                    run_name=config.name,
                )
        return scores


def summary_metrics(stages: list[Stage], after: list[dict[str, float]]) -> dict[str, float]:
    """The mean over the eval sets after the last stage (``eval/<metric>``) and the backward
    transfer (``continual/backward_transfer/<metric>``); ``after[i]``: scores after stage i."""
    names = [stage.spec.name for stage in stages]
    final, out = after[-1], {}
    for metric in eval_metric_names(final, names):
        values = [final[k] for n in names if (k := f"eval/{n}/{metric}") in final]
        if values:
            out[f"eval/{metric}"] = statistics.fmean(values)
        changes = [
            final[key] - after[i][key]
            for i, name in enumerate(names[:-1])
            if (key := f"eval/{name}/{metric}") in final and key in after[i]
        ]
        if changes:
            out[f"continual/backward_transfer/{metric}"] = statistics.fmean(changes)
    return out


# -- the table -------------------------------------------------------------------------------------


def render_matrix(
    title: str, stages: list[Stage], matrix: list[tuple[str, dict[str, float]]]
) -> str:
    """``continual.md``: per metric, a row per stage (after training on it), a column per set."""
    names = [stage.spec.name for stage in stages]
    return format_matrix(
        title, names, [{"after": after, "scores": scores} for after, scores in matrix]
    )
