"""The lifecycle of one arm.

stores → rows → transforms → backend.prepare → algorithm.train (teardown always) → best-effort
eval → ``run_result.json``. A failure anywhere is recorded in the result, never lost: the run ends
``failed`` with the error and its traceback, and eval never fails a run. A signal (a cancel, a
Slurm timeout) ends it ``cancelled`` or ``timeout`` in any phase, with its real duration and the
metrics it logged so far; the interruption is then raised on, so that the process stops.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evsys.benchmarks import Benchmark, InLoopValidation, load_benchmarks
from evsys.callbacks import Callbacks
from evsys.config import ExperimentConfig
from evsys.cpus import runtime_state
from evsys.data.lineage import data_lineage
from evsys.data.sources import apply_transforms, load_rows
from evsys.errors import ConfigError, DataError
from evsys.files import StorageError, write_json_atomically
from evsys.interrupts import interruption, signals_deferred, signals_raise
from evsys.log_stores.dashboard import DashboardLogStore, find_dashboard_store
from evsys.log_stores.multiplex import MultiplexLogStore
from evsys.prompt_tuning.system_prompt import best_prompt, with_system_prompt
from evsys.protocols import LogStore, RunContext, RunResult
from evsys.registry import BACKENDS, DATA_STORES, LOG_STORES, resolve_algorithm
from evsys.run.continual import run_continual
from evsys.run.dependencies import DEFAULT, ArmDependencies
from evsys.run.evaluation import best_effort, eval_rows, evaluate
from evsys.run.record import (
    RUN_RESULT,
    git_state,
    new_run_id,
    run_hyperparams,
    run_record,
    write_run_started,
)
from evsys.task_verifiers import recipe_judge

log = logging.getLogger(__name__)


@dataclass
class ArmOutcome:
    result: RunResult
    record: dict[str, Any]

    @property
    def bad_input(self) -> bool:
        """Whether the run failed on its input (config or data) rather than in the engine."""
        return self.record.get("error_type") in (ConfigError.__name__, DataError.__name__)


def run_arm(
    config: ExperimentConfig,
    run_dir: Path,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    dependencies: ArmDependencies = DEFAULT,
) -> ArmOutcome:
    """Run one arm in ``run_dir`` and record it there; returns the result and the record.

    ``dependencies`` replace the training, the inference client or the benchmarks (tests, and
    :class:`evsys.Experiment` callers who inject their own); the lifecycle stays the same.
    """
    deps = dependencies
    run_dir.mkdir(parents=True, exist_ok=True)
    started_at = datetime.now(UTC)
    run_id = new_run_id(config.name)
    log_store: _LatestMetrics | None = None
    dashboard: DashboardLogStore | None = None
    lineage: list[dict[str, Any]] = []
    error_type, trace, stopped = None, None, None
    with signals_raise():
        try:
            # Inside the try: a Ctrl-C from the moment the started record exists is recorded.
            write_run_started(
                run_dir,
                run_id=run_id,
                name=config.name,
                config=config.model_dump(mode="json"),
                overrides=list(overrides),
                started_at=started_at,
            )
            git_state()  # looked up now, so the record names the code the run started from
            data_store = DATA_STORES.build(config.data_store.kind, config.data_store.params)
            callbacks = Callbacks.build(config.callbacks)
            built = LOG_STORES.build(
                config.log_store.kind, config.log_store.params, run_dir=run_dir
            )
            built, dashboard = _with_dashboard(built, run_dir, deps)
            log_store = _LatestMetrics(callbacks.watch(built))
            lineage = data_lineage(config, data_store)
            if dashboard is not None:  # the run exists on the dashboard before its first metric
                dashboard.start_run(config, overrides=list(overrides), data_lineage=lineage)
            # A bad benchmark path fails now, not after training.
            benchmarks = (
                deps.benchmarks
                if deps.benchmarks is not None
                else load_benchmarks(config, data_store)
            )
            if config.continual is not None:  # a chain of stages, each scored on every eval set
                result = run_continual(
                    config, run_id, run_dir, data_store, log_store, benchmarks, deps, callbacks
                )
            else:
                result = _train_and_score(
                    config, run_id, run_dir, data_store, log_store, benchmarks, deps, callbacks
                )
        except BaseException as exc:
            # Recorded either way. An error ends only this arm (a sweep goes on); an
            # interruption (signal, Ctrl-C, submitit's timeout) is raised on once recorded.
            error_type, trace = type(exc).__name__, traceback.format_exc()
            stop = interruption(exc)
            if stop is not None or not isinstance(exc, Exception):
                stopped = exc
            result = RunResult(
                run_id=run_id,
                status=stop.status if stop is not None else "failed",
                error=f"{error_type}: {exc}",
                metrics=log_store.latest if log_store is not None else {},
            )
            log.error("run %s %s: %s", run_id, result.status, result.error)

        # From here to the record, a signal waits: one that came while the dashboard heard of
        # the end (an HTTP call, slow on a busy machine) left the arm 'running' on disk.
        with signals_deferred():
            if dashboard is not None:
                _finish_quietly(dashboard, config, result)
            if log_store is not None:
                _close_quietly(log_store)
            record = run_record(
                run_dir,
                result,
                name=config.name,
                config=config.model_dump(mode="json"),
                overrides=list(overrides),
                started_at=started_at,
                traceback=trace,
                error_type=error_type,
                runtime=runtime_state(),
                data_lineage=lineage,
            )
            try:
                write_json_atomically(run_dir / RUN_RESULT, record)
            except StorageError as exc:
                # Nothing on disk says how the arm ended: the file still holds the started
                # record (a reader sees an arm that did not finish; `evsys resume` runs it
                # again), and the caller is told the arm failed, with the cause.
                ended = result.status + (f" ({result.error})" if result.error else "")
                result = replace(
                    result, status="failed", error=f"StorageError: {exc}; the run had ended {ended}"
                )
                record |= {"status": "failed", "finished": False, "error": result.error}
                log.error("run %s: %s", run_id, result.error)
    if stopped is not None:
        raise stopped
    return ArmOutcome(result=result, record=record)


def _train_and_score(
    config: ExperimentConfig,
    run_id: str,
    run_dir: Path,
    data_store: Any,
    log_store: LogStore,
    benchmarks: list[Benchmark],
    deps: ArmDependencies,
    callbacks: Callbacks,
) -> RunResult:
    """Baseline (if asked), training, then best-effort eval and test benchmarks."""
    # An RL recipe judged by an LLM (verifier llm_judge) may train on harbor llm_judge tasks.
    judge = recipe_judge(config.algorithm.params)
    rows = load_rows(config.data, data_store, judge=judge)
    rows = apply_transforms(rows, config.data.transforms)
    baseline, baseline_errors = {}, {}
    if config.eval.baseline:  # the starting model, scored as the trained one will be
        baseline = _best_effort_eval(
            config,
            config.model.load_checkpoint_path,
            data_store,
            rows,
            benchmarks,
            run_dir,
            deps,
            label="baseline",
            errors=baseline_errors,
        )
    # API models under a test benchmark's `models`: scored once, whatever training does.
    if any(benchmark.spec.models for benchmark in benchmarks):
        # Imported only then: a run without API baselines need not pay for the eval harness.
        from evsys.harness.baselines import score_api_baselines

        baseline |= score_api_baselines(config, benchmarks, run_dir, baseline_errors)
    if baseline:
        log_store.log_metrics(baseline, step=0)
    if deps.train is not None:
        result = deps.train(config, run_dir)
    else:
        result = _train(config, run_id, run_dir, data_store, log_store, rows, benchmarks, callbacks)
    result.metrics.update(baseline)
    result.extras.update(baseline_errors)
    if result.status == "completed":
        eval_metrics = _best_effort_eval(
            config,
            result.artifacts.get("final_checkpoint"),
            data_store,
            rows,
            benchmarks,
            run_dir,
            deps,
            label=None,
            errors=result.extras,
            system_prompt=best_prompt(result.artifacts),  # a tuned prompt (gepa_prompt)
        )
        if eval_metrics:
            result.metrics.update(eval_metrics)
            log_store.log_metrics(eval_metrics, step=int(result.metrics.get("train/steps", 0)))
    return result


def _train(
    config: ExperimentConfig,
    run_id: str,
    run_dir: Path,
    data_store: Any,
    log_store: LogStore,
    rows: list[dict[str, Any]],
    benchmarks: list[Benchmark],
    callbacks: Callbacks,
) -> RunResult:
    backend = BACKENDS.build(config.backend.kind, config.backend.params)
    if getattr(backend, "launches_ranks", lambda: False)():  # data-parallel: ranks of its own
        return backend.train_in_ranks(config, run_id, run_dir, rows)
    algorithm_cls = resolve_algorithm(config.algorithm.kind, config.backend.kind)
    algorithm = algorithm_cls(**config.algorithm.params)
    handles = backend.prepare(model=config.model, run_dir=run_dir)
    validation = InLoopValidation(benchmarks, config.eval)
    ctx = RunContext(
        run_id=run_id,
        run_dir=run_dir,
        config=config,
        data_store=data_store,
        log_store=log_store,
        backend=backend,
        handles=handles,
        train_rows=rows,
        validation=validation,
        callbacks=callbacks,
    )
    log_store.log_hyperparams(run_hyperparams(config))
    try:
        callbacks.train_begin()
        result = algorithm.train(ctx)
        callbacks.train_end()
    finally:
        backend.teardown(handles)
    result.extras.update(callbacks.record())
    result.metrics.update(validation.latest())
    result.extras.update({f"val_{key}": error for key, error in validation.errors.items()})
    return result


def _best_effort_eval(
    config: ExperimentConfig,
    checkpoint: str | None,
    data_store: Any,
    train_rows: list[dict[str, Any]],
    benchmarks: list[Benchmark],
    run_dir: Path,
    deps: ArmDependencies,
    *,
    label: str | None,
    errors: dict[str, Any],
    system_prompt: str | None = None,
) -> dict[str, float]:
    """Eval rows and ``test`` benchmarks scored on ``checkpoint``; with a ``label`` (e.g.
    ``baseline``) every name and file gets it as a prefix; with a ``system_prompt`` every
    conversation opens with it. Failures are kept in ``errors``."""
    tests = [b for b in benchmarks if "test" in b.spec.tags]
    scored = config.eval.enabled and config.eval.metrics
    if not scored and not tests:
        return {}
    out_dir = run_dir / label if label else run_dir
    prefix = f"{label}_" if label else ""
    client, metrics = None, {}
    with best_effort(f"{prefix}eval", config.name, errors):
        client = deps.inference_client(config, checkpoint)
    if client is None:
        return {}
    metric_errors: dict[str, Any] = {}  # one metric that fails costs only its own scores
    if scored:
        with best_effort(f"{prefix}eval", config.name, errors):
            rows = eval_rows(config, data_store, train_rows)
            if system_prompt is not None:
                rows = with_system_prompt(rows, system_prompt)
            metrics |= evaluate(
                config, client, rows, out_dir, label=label or "eval", errors=metric_errors
            )
    for benchmark in tests:
        # One benchmark that cannot be scored costs only its own scores.
        with best_effort(f"{prefix}benchmark_{benchmark.name}", config.name, errors):
            if system_prompt is not None:
                rows = with_system_prompt(benchmark.rows, system_prompt)
                benchmark = replace(benchmark, rows=rows)
            metrics |= benchmark.score(
                client,
                config.eval,
                split="test",
                predictions_dir=out_dir / "benchmarks",
                errors=metric_errors,
                run_name=config.name,
            )
    errors |= {f"{prefix}{key}": error for key, error in metric_errors.items()}
    return {f"{label}/{k}" if label else k: v for k, v in metrics.items()}


def _with_dashboard(
    store: LogStore, run_dir: Path, deps: ArmDependencies
) -> tuple[LogStore, DashboardLogStore | None]:
    """The run's log store and its dashboard store: the config's own (``dashboard``, or one of
    ``multiplex``), else one added for the dashboard an ``Experiment(store=...)`` names."""
    found = find_dashboard_store(store)
    if found is not None or deps.dashboard is None:
        return store, found
    added = DashboardLogStore.for_arm(deps.dashboard, run_dir)
    return MultiplexLogStore.of([store, added]), added


def _finish_quietly(dashboard: DashboardLogStore, config: ExperimentConfig, result: Any) -> None:
    # Bookkeeping: the run's own record is written whatever the dashboard makes of it.
    try:
        dashboard.finish_run(config, result)
    except Exception as exc:
        log.warning("recording the run's end on the dashboard failed: %s", exc)


def _close_quietly(log_store: LogStore) -> None:
    try:
        log_store.close()
    except Exception as exc:
        log.warning("closing the log store failed: %s", exc)


class _LatestMetrics:
    """The run's log store, keeping the last value of every metric logged: what an interrupted
    run records as its metrics."""

    def __init__(self, inner: LogStore):
        self.inner = inner
        self.latest: dict[str, float] = {}

    def log_scalar(self, name: str, value: float, step: int) -> None:
        self.inner.log_scalar(name, value, step)
        self.latest[name] = value

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.inner.log_metrics(metrics, step)
        self.latest.update(metrics)

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        self.inner.log_hyperparams(params)

    def log_artifact(self, name: str, path: str) -> None:
        self.inner.log_artifact(name, path)

    def close(self) -> None:
        self.inner.close()
