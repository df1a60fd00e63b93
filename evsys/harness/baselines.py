"""API models listed under a test benchmark's ``models``, scored once as baselines.

Each is scored by :func:`evaluate_model` on the benchmark's rows with its metrics and breakdown
keys, so ``test/<benchmark>/<metric>@<model>`` sits next to the trained model's
``test/<benchmark>/<metric>``. Like all eval it is best effort: a model that cannot be scored
costs its own scores (its error is kept in the run's extras), and calls that exhausted their
retries are counted there and listed in ``baselines/<benchmark>@<model>/summary.md``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from evsys.benchmarks import Benchmark
from evsys.config import ExperimentConfig, baseline_model
from evsys.harness.config import ModelEvalConfig
from evsys.harness.evaluate import evaluate_model
from evsys.interrupts import reraise_if_interruption

log = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9._@=-]+")


def score_api_baselines(
    config: ExperimentConfig, benchmarks: list[Benchmark], run_dir: Path, errors: dict[str, Any]
) -> dict[str, float]:
    """``{test/<benchmark>/<metric>@<model>: value}`` for every model of every test benchmark."""
    scores: dict[str, float] = {}
    for benchmark in benchmarks:
        if "test" not in benchmark.spec.tags:
            continue
        for entry in benchmark.spec.models:
            spec = baseline_model(entry)
            key = f"{benchmark.name}@{spec.label}"
            eval_config = ModelEvalConfig(
                inference_kind=spec.kind,
                client_params=spec.params,
                label=spec.label,
                max_tokens=config.eval.max_tokens,
                temperature=config.eval.temperature,
                metrics=benchmark.metrics,
                breakdown_keys=benchmark.breakdown_keys,
                output_dir=str(run_dir / "baselines" / _UNSAFE.sub("_", key)),
            )
            try:
                summary = evaluate_model(eval_config, rows=benchmark.rows).summary
            except Exception as exc:  # best effort: never fails the run
                reraise_if_interruption(exc)  # but a timeout or cancel ends it
                log.warning("baseline %s was skipped: %s", key, exc)
                errors[f"baseline_{key}_error"] = f"{type(exc).__name__}: {exc}"
                continue
            if summary.retry_report.total_failures:
                report = summary.retry_report
                errors[f"baseline_{key}_retry_failures"] = (
                    f"{report.total_failures} calls exhausted their retries (rows "
                    f"{report.failed_rows}); scored as wrong"
                )
            scores |= {
                f"test/{benchmark.name}/{name}@{spec.label}": value
                for name, value in summary.metrics.items()
                if not _is_pass_at(name)  # the trained model's test scores have no pass@k
            }
    return scores


def _is_pass_at(name: str) -> bool:
    head = name.split("/")[0]
    return head.startswith(("pass@", "secondary_pass@"))
