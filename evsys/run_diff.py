"""What differs between two runs' records (their ``run_result.json``): config and metrics.

The resolved configs are flattened to dotted keys (``algorithm.params.learning_rate``; list items
as ``data.transforms[0].kind``) so that one line says one difference. Pure functions of the
records, below the run package (:mod:`evsys.run.compare` reads them from disk), so that the
dashboard's pages draw the same diff without importing a run's machinery.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from evsys.report import format_number

_MISSING = object()


@dataclass
class RunDiff:
    a: dict[str, Any]
    """The first run's record."""
    b: dict[str, Any]
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    """Config key → (value in a, value in b), for keys both runs have."""
    added: dict[str, Any] = field(default_factory=dict)
    """Config keys only b has, with b's value."""
    removed: dict[str, Any] = field(default_factory=dict)
    """Config keys only a has, with a's value."""
    metrics: dict[str, tuple[Any, Any, float | None]] = field(default_factory=dict)
    """Metric → (a, b, b - a); a value is None where that run lacks the metric."""

    @property
    def same_config(self) -> bool:
        return not (self.changed or self.added or self.removed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": summary(self.a),
            "b": summary(self.b),
            "same_config": self.same_config,
            "config": {
                "changed": {k: {"a": a, "b": b} for k, (a, b) in self.changed.items()},
                "added": self.added,
                "removed": self.removed,
            },
            "metrics": {k: {"a": a, "b": b, "delta": d} for k, (a, b, d) in self.metrics.items()},
        }


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """Who a run is: where its record is, its id, status, config hash and commit."""
    git = record.get("git") or {}
    return {
        "path": record.get("_path"),
        "run_id": record.get("run_id"),
        "name": record.get("name"),
        "status": record.get("status"),
        "config_hash": record.get("config_hash"),
        "git_commit": git.get("commit"),
        "git_diff": git.get("diff"),
    }


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": [1, {"c": 2}]}}`` → ``{"a.b[0]": 1, "a.b[1].c": 2}``. Empty dicts and lists
    stay as values, so that "became empty" is still a difference."""
    if isinstance(value, dict) and value:
        items = ((f"{prefix}.{k}" if prefix else str(k), v) for k, v in value.items())
    elif isinstance(value, list) and value:
        items = ((f"{prefix}[{i}]", v) for i, v in enumerate(value))
    else:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in items:
        flat.update(flatten(item, key))
    return flat


def diff_runs(a: dict[str, Any], b: dict[str, Any]) -> RunDiff:
    result = RunDiff(a=a, b=b)
    config_a, config_b = flatten(a["config"]), flatten(b["config"])
    for key in sorted(config_a.keys() | config_b.keys()):
        value_a, value_b = config_a.get(key, _MISSING), config_b.get(key, _MISSING)
        if value_b is _MISSING:
            result.removed[key] = value_a
        elif value_a is _MISSING:
            result.added[key] = value_b
        elif value_a != value_b or type(value_a) is not type(value_b):
            result.changed[key] = (value_a, value_b)
    metrics_a, metrics_b = a.get("metrics") or {}, b.get("metrics") or {}
    for name in sorted(metrics_a.keys() | metrics_b.keys()):
        value_a, value_b = metrics_a.get(name), metrics_b.get(name)
        result.metrics[name] = (value_a, value_b, _delta(value_a, value_b))
    return result


def _delta(a: Any, b: Any) -> float | None:
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool):
        delta = float(b) - float(a)
        return delta if math.isfinite(delta) else None
    return None


def show_value(value: Any, missing: str = "null") -> str:
    """A config value as ``evsys diff`` and the dashboard's compare view show it."""
    if value is None:
        return missing
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # quoted: "" and "1" read unambiguously
    return json.dumps(value, default=str) if isinstance(value, list | dict | bool) else str(value)


def show_metric(value: Any) -> str:
    """A metric value; ``-`` where the run lacks it."""
    return format_number(value, ".6g") if isinstance(value, int | float) else show_value(value, "-")
