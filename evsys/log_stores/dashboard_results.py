"""What a finished run sends to its dashboard run: how it ended and what it scored.

The run's metrics split by their prefix: ``eval/…`` (and ``baseline/eval/…``) become eval runs,
``test/<benchmark>/…`` a benchmark record and an eval run per benchmark; the predictions files
eval wrote (``predictions.jsonl``, ``benchmarks/<name>.jsonl``) go with their eval run.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
from pathlib import Path
from typing import Any

from evsys.run.evaluation import PREDICTIONS

log = logging.getLogger(__name__)

PREDICTION_ROWS_PER_WRITE = 500


def send_results(store: Any, config: Any, result: Any) -> None:
    """Status, error and summary of the run; its eval runs, benchmarks and predictions; and,
    for a single run, the outcome of its experiment."""
    client, run_id = store.client, store.run_id
    numbers_only = {k: float(v) for k, v in result.metrics.items() if _is_number(v)}
    steps = _int(numbers_only.get("train/steps"))
    run_dir: Path | None = store.run_dir
    for label in ("eval", "baseline/eval"):
        scores = _under(numbers_only, f"{label}/")
        if scores:
            eval_id = client.log_eval_run(run_id, scores, name=label, step=steps)
            predictions = PREDICTIONS if label == "eval" else f"baseline/{PREDICTIONS}"
            if run_dir is not None:
                _send_predictions(client, run_id, eval_id, run_dir / predictions)
    for name, scores in _by_benchmark(numbers_only).items():
        benchmark_id = _benchmark_id(config, name)
        client.record_benchmark(run_id, scores, benchmark_id=benchmark_id, benchmark_name=name)
        eval_id = client.log_eval_run(
            run_id, scores, name=f"test/{name}", step=steps, benchmark_id=benchmark_id
        )
        if run_dir is not None:
            _send_predictions(client, run_id, eval_id, run_dir / "benchmarks" / f"{name}.jsonl")
    client.update_run(run_id, status=result.status, error=result.error, summary=numbers_only)
    if not store.in_sweep:
        success = config.metadata.success_metric
        best = numbers_only.get(success.name) if success else None
        # A NaN or infinite score is never the best (the run's summary keeps it as it is).
        nonfinite = best is not None and not math.isfinite(best)
        client.update_experiment(
            store.experiment_id,
            status=result.status,
            best_run_id=run_id if result.status == "completed" and not nonfinite else None,
            best_score=None if nonfinite else best,
        )


def _send_predictions(client: Any, run_id: str, eval_id: str | None, path: Path) -> None:
    """The predictions of one eval, in writes of at most PREDICTION_ROWS_PER_WRITE rows."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return  # this eval wrote none (it failed, or scored nothing)
    rows = [_prediction_row(json.loads(line)) for line in lines if line.strip()]
    for start in range(0, len(rows), PREDICTION_ROWS_PER_WRITE):
        chunk = rows[start : start + PREDICTION_ROWS_PER_WRITE]
        client.log_predictions(run_id, chunk, eval_run_id=eval_id)


def _prediction_row(record: dict[str, Any]) -> dict[str, Any]:
    """A line of a predictions file as the dashboard's row: prompt and completion as text."""
    prompt = record.get("prompt")
    if isinstance(prompt, list):  # chat messages
        prompt = "\n".join(
            f"{m.get('role', '?')}: {m.get('content', '')}" if isinstance(m, dict) else str(m)
            for m in prompt
        )
    row: dict[str, Any] = {
        "prompt": str(prompt or ""),
        "completion": str(record.get("prediction") or ""),
        "meta": {"index": record.get("index"), "id": record.get("id")},
    }
    if record.get("target") is not None:
        row["expected"] = record["target"]
    return row


def _by_benchmark(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    """``test/<name>/<metric…>`` scores grouped by benchmark name (API baselines included)."""
    out: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        parts = key.split("/", 2)
        if len(parts) == 3 and parts[0] == "test":
            out.setdefault(parts[1], {})[parts[2]] = value
    return out


def _benchmark_id(config: Any, name: str) -> str | None:
    """The dashboard id of the benchmark scored as ``name``, when it came from the dashboard."""
    from evsys.data.references import benchmark_reference, is_benchmark_reference

    for spec in config.metadata.benchmark:
        if not is_benchmark_reference(spec):
            continue
        try:
            cached = benchmark_reference(spec)
        except Exception:  # noqa: BLE001 - bookkeeping: an unreadable reference names nothing
            continue
        if cached is not None and name in (spec.name, cached.name, cached.id):
            return cached.id
    return None


def _under(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)}


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _int(value: float | None) -> int | None:
    return int(value) if value is not None else None
