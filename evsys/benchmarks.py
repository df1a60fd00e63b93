"""Benchmarks of ``metadata.benchmark``: scored in the loop (``val``) or once after training (``test``).

A benchmark is a directory in the harbor format: ``tasks.jsonl`` (one task per line: harbor
tasks, chat rows or prompt/answer rows) and an optional ``metadata.yaml`` (``name``,
``description``, ``breakdown_keys``). Its rows pass through the run's ``data.transforms`` (so
they are presented as the training rows are) and are scored like eval rows, with the
benchmark's ``metrics`` (else ``eval.metrics``), as ``<split>/<name>/<metric>``;
``breakdown_keys`` add one score per value of a task's metadata key,
``<split>/<name>/<metric>/<key>=<value>``. Harbor tasks are scored by their own verifiers as
``pass_rate`` (:mod:`evsys.task_verifiers`); a task whose verifier cannot run fails the load.

Benchmarks are read before training starts, so a wrong path fails the run at once, not after
hours of training.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evsys.config import BenchmarkSpec, EvalConfig, ExperimentConfig, InferenceSpec, MetricSpec
from evsys.data.images import inline_row_images
from evsys.data.jsonl import iter_numbered_objects, open_text
from evsys.data.sources import apply_transforms, resolve_path
from evsys.data.types import (
    ChatMessagesRow,
    HarborTask,
    detect_format,
    from_dict,
    task_row,
    to_dict,
)
from evsys.errors import DataError
from evsys.protocols import DataStore, InferenceClient, LogStore, Row
from evsys.task_verifiers import RowVerifier, own_payload

log = logging.getLogger(__name__)

TASKS_FILE, METADATA_FILE = "tasks.jsonl", "metadata.yaml"


@dataclass
class Benchmark:
    name: str
    spec: BenchmarkSpec
    rows: list[Row]
    metrics: list[MetricSpec]
    breakdown_keys: list[str]

    def score(
        self,
        client: InferenceClient,
        eval_cfg: EvalConfig,
        split: str,
        predictions_dir: Path | None = None,
        errors: dict[str, Any] | None = None,
        run_name: str = "",
    ) -> dict[str, float]:
        """Generate for every task and score: ``{<split>/<name>/<metric>[/<key>=<value>]: …}``.
        A metric that fails costs only its own scores (kept in ``errors``)."""
        from evsys.clients.usage import mark, usage_since
        from evsys.run.evaluation import generate_all, score_metrics, write_predictions

        since = mark(client)
        predictions = generate_all(
            client,
            self.rows,
            max_tokens=eval_cfg.max_tokens,
            temperature=eval_cfg.temperature,
            label=f"{split} {self.name}",
        )
        usage = usage_since(client, since, prefix=f"{split}/{self.name}")
        if predictions_dir is not None:
            write_predictions(predictions_dir / f"{self.name}.jsonl", self.rows, predictions)
        return usage | score_metrics(
            self.metrics,
            predictions,
            self.rows,
            prefix=f"{split}/{self.name}",
            run_name=run_name,
            breakdown_keys=self.breakdown_keys,
            errors=errors,
        )


def load_benchmarks(config: ExperimentConfig, store: DataStore) -> list[Benchmark]:
    """Every benchmark of ``metadata.benchmark``, read now; a problem raises DataError naming it."""
    benchmarks = []
    for index, spec in enumerate(config.metadata.benchmark):
        where = f"metadata.benchmark[{index}]"
        directory = benchmark_directory(spec, store)
        metadata = _read_metadata(directory, where)
        # Presented as the training rows are (a system prompt, a chat format, …).
        checker = RowVerifier(None, judge=_judge_of(spec.metrics))
        rows = apply_transforms(_read_tasks(directory, where, checker), config.data.transforms)
        metrics = spec.metrics or _default_metrics(rows, config.eval.metrics)
        if not metrics:
            raise DataError(
                f"{where}: no metrics: give the benchmark `metrics`, or set eval.metrics"
            )
        benchmarks.append(
            Benchmark(
                name=spec.name or metadata.get("name") or directory.name,
                spec=spec,
                rows=rows,
                metrics=metrics,
                breakdown_keys=spec.breakdown_keys or list(metadata.get("breakdown_keys", [])),
            )
        )
    names = [b.name for b in benchmarks]
    if len(set(names)) != len(names):
        raise DataError(f"metadata.benchmark: two benchmarks share a name ({names}); set `name`")
    return benchmarks


def benchmark_directory(spec: BenchmarkSpec, store: DataStore) -> Path:
    """The directory of a benchmark: the cache of its dashboard id (or, with neither id nor
    path, of its name), pulled now if missing; else its local ``path``."""
    from evsys.data.references import benchmark_reference

    cached = benchmark_reference(spec)
    return cached.content if cached is not None else resolve_path(spec.path, store)


class InLoopValidation:
    """Scores the ``val`` benchmarks on the live model every ``run_every`` steps."""

    def __init__(self, benchmarks: list[Benchmark], eval_cfg: EvalConfig):
        self.benchmarks = [b for b in benchmarks if "val" in b.spec.tags]
        self.eval_cfg = eval_cfg
        self.history: list[tuple[int, dict[str, float]]] = []
        self.errors: dict[str, str] = {}  # the last failure of each val metric

    def due(self, step: int) -> list[Benchmark]:
        return [b for b in self.benchmarks if step % (b.spec.run_every or 1) == 0]

    def run(
        self, step: int, make_client: Callable[[], InferenceClient], log_store: LogStore
    ) -> dict[str, float]:
        due = self.due(step)
        if not due:
            return {}
        client = make_client()
        scores: dict[str, float] = {}
        for benchmark in due:
            scores |= benchmark.score(client, self.eval_cfg, split="val", errors=self.errors)
        log_store.log_metrics(scores, step=step)
        self.history.append((step, scores))
        return scores

    def latest(self) -> dict[str, float]:
        """The last score of every val metric: what the run's result keeps."""
        out: dict[str, float] = {}
        for _, scores in self.history:
            out |= scores
        return out


def read_benchmark(directory: Path, where: str) -> tuple[list[Row], dict[str, Any]]:
    """The tasks (as eval rows, not yet transformed) and the metadata of a benchmark directory."""
    return _read_tasks(directory, where), _read_metadata(directory, where)


def as_eval_row(obj: Row) -> Row:
    """One line of ``tasks.jsonl`` (a harbor task, a chat row or a prompt/answer row) as an eval row."""
    return _as_row(obj)


def _read_tasks(directory: Path, where: str, checker: RowVerifier | None = None) -> list[Row]:
    """Eval rows of ``tasks.jsonl``: harbor tasks and chat rows, or plain prompt/answer rows.
    ``checker``: refuses, naming its line, a task whose verifier cannot run."""
    path = directory / TASKS_FILE
    if not path.is_file():
        raise DataError(
            f"{where}: no benchmark at '{directory}': expected a directory holding {TASKS_FILE} "
            f"(and optionally {METADATA_FILE})"
        )
    rows = []
    try:
        with open_text(path) as handle:
            for number, obj in iter_numbered_objects(handle, str(path)):
                try:
                    # Image files it names are read from the benchmark's images/ folder now.
                    rows.append(inline_row_images(_as_row(obj), directory, "task"))
                except DataError as exc:
                    raise DataError(f"{path}:{number}: {exc}") from None
                if checker is not None:
                    checker.check(rows[-1], f"{path}:{number}")
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None
    if not rows:
        raise DataError(f"{where}: {path} holds no tasks")
    return rows


def _judge_of(metrics: list[MetricSpec]) -> InferenceSpec | None:
    """The judge client of the benchmark's ``pass_rate`` metric, if it has one."""
    for spec in metrics:
        if spec.kind == "pass_rate" and spec.params.get("judge") is not None:
            return InferenceSpec.model_validate(spec.params["judge"])
    return None


def _default_metrics(rows: list[Row], eval_metrics: list[MetricSpec]) -> list[MetricSpec]:
    """``eval.metrics``; for harbor tasks, ``pass_rate`` (their own verifiers) first, and
    ``eval.metrics`` only when every task is an in-process one with an ``expected`` answer for
    them to compare with (sandbox tasks have none)."""
    payloads = [own_payload(row) for row in rows]
    if any(p is None for p in payloads):
        return eval_metrics
    others = [m for m in eval_metrics if m.kind != "pass_rate"]
    with_answers = all(
        p.get("kind") == "in_process" and p.get("expected") is not None for p in payloads
    )
    return [MetricSpec(kind="pass_rate"), *(others if with_answers else [])]


def _read_metadata(directory: Path, where: str) -> dict[str, Any]:
    import yaml

    path = directory / METADATA_FILE
    if not path.is_file():
        return {}
    try:
        metadata = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DataError(f"{where}: {path} is not valid YAML: {exc}") from None
    if not isinstance(metadata, dict):
        raise DataError(f"{where}: {path} must be a mapping, found {type(metadata).__name__}")
    return metadata


def _as_row(obj: Row) -> Row:
    """An eval row (prompt, answer, metadata keys on top) of one line of ``tasks.jsonl``."""
    if "prompt" in obj and detect_format(obj) == "unknown":
        return obj  # already an eval row
    task = from_dict(obj)
    if isinstance(task, HarborTask):
        return task_row(task)
    if isinstance(task, ChatMessagesRow):
        return {**task.metadata, **to_dict(task)}
    raise DataError(
        "a prompt_dataset row has no prompt to generate from; benchmarks take harbor tasks, "
        "chat rows or prompt/answer rows"
    )
