"""A sweep's summary as data: its files' names, the arms' statuses, a row per arm and per run
group, and the statistics over a group's seeds.

Below :mod:`evsys.sweep.aggregate` (which reads them from disk) and the modules that draw them
(:mod:`evsys.sweep.summary`, :mod:`evsys.sweep.conclusion`), so those import it, not each other.
Statistics: a group's metrics are the mean and the *sample* standard deviation
(``statistics.stdev``, n - 1) over its completed arms; with a single value the std is ``None``.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evsys.run.record import SEED

SWEEP_PLAN = "sweep_plan.json"
SWEEP_RESULT = "sweep_result.json"
SUMMARY_MD = "summary.md"
PLOT_PNG = "success_metric.png"
SCHEMA_VERSION = 1
COMPLETED, MISSING = "completed", "missing"
RUNNING, INTERRUPTED = "running", "interrupted"
"""An arm that started and has not ended; one whose process died without recording an end."""


@dataclass
class ArmRow:
    """One arm as found on disk."""

    name: str
    dir: str
    """Relative to the sweep directory."""
    overrides: list[str]
    status: str
    """``completed``, ``failed``, ``cancelled``, ``timeout`` (from run_result.json), ``running``,
    ``interrupted`` (started, no end recorded) or ``missing`` (never started)."""
    metrics: dict[str, float]
    error: str | None
    group_id: str
    seed: int | None
    config_hash: str | None
    run_dir: str | None = None
    error_type: str | None = None
    """The exception class that failed the arm (``ConfigError``: refused before training)."""


@dataclass
class MetricStats:
    mean: float
    std: float | None
    """Sample std (n - 1); None when n == 1."""
    n: int


@dataclass
class GroupRow:
    """Arms equal but for the seed, with their metrics across seeds."""

    group_id: str
    label: str
    """The first arm's overrides without the seed ones."""
    arms: list[str]
    n: int
    """Completed arms: the ones the statistics are over."""
    metrics: dict[str, MetricStats] = field(default_factory=dict)


@dataclass
class SweepSummary:
    name: str
    sweep_dir: Path
    success_metric: dict[str, str] | None
    """``{"name": ..., "direction": "max" | "min"}``, or None: no best arm, no plot."""
    arms: list[ArmRow]
    groups: list[GroupRow]
    best_arm: str | None
    best_value: float | None
    failed: list[str]
    """Arms that ended without completing (``failed``, ``cancelled``, ``timeout``,
    ``interrupted``)."""
    missing: list[str]
    """Arms that never started."""
    hypothesis: str = ""
    """``metadata.hypothesis`` of the experiment."""
    running: list[str] = field(default_factory=list)
    """Arms that started and have not ended yet."""
    conclusion: str = ""
    """What the results say about it (:func:`evsys.sweep.conclusion.conclude`)."""

    def to_dict(self) -> dict[str, Any]:
        """The ``sweep_result.json`` payload."""
        return {"schema_version": SCHEMA_VERSION, **asdict(self), "sweep_dir": str(self.sweep_dir)}


# -- overrides and statistics ------------------------------------------------------------------


def split_override(line: str) -> tuple[str, str]:
    """``+algorithm.params.lora_rank=8`` → ``("algorithm.params.lora_rank", "8")``."""
    key, _, value = line.partition("=")
    return key.lstrip("+~"), value


def non_seed_overrides(overrides: list[str]) -> list[str]:
    return [o for o in overrides if split_override(o)[0] != SEED]


def number(value: Any) -> float | None:
    """A metric value as a float, or None when it is not a finite number (a bool, NaN, text)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def metric_names(arms: list[ArmRow]) -> list[str]:
    """Every metric any arm reports, in order of first appearance."""
    return list(dict.fromkeys(k for arm in arms for k in arm.metrics))


def _stats(values: list[float]) -> MetricStats:
    std = statistics.stdev(values) if len(values) > 1 else None
    return MetricStats(mean=statistics.fmean(values), std=std, n=len(values))


def run_groups(arms: list[ArmRow]) -> list[GroupRow]:
    """Arms grouped by ``group_id``, in order of first appearance, with mean ± std per metric."""
    members: dict[str, list[ArmRow]] = {}
    for arm in arms:
        members.setdefault(arm.group_id, []).append(arm)
    groups = []
    for gid, group in members.items():
        done = [a for a in group if a.status == COMPLETED]
        metrics = {}
        for metric in metric_names(done):
            values = [v for a in done if (v := number(a.metrics.get(metric))) is not None]
            if values:
                metrics[metric] = _stats(values)
        label = " ".join(non_seed_overrides(group[0].overrides)) or "(no overrides)"
        groups.append(GroupRow(gid, label, [a.name for a in group], len(done), metrics))
    return groups


def varying_overrides(arms: list[ArmRow], *, exclude: tuple[str, ...] = ()) -> dict[str, list]:
    """Override keys whose value differs between arms → each arm's value (None where unset)."""
    values = [dict(map(split_override, arm.overrides)) for arm in arms]
    keys = dict.fromkeys(k for v in values for k in v if k not in exclude)
    columns = {key: [v.get(key) for v in values] for key in keys}
    return {key: col for key, col in columns.items() if len(set(col)) > 1}
