"""What the pages show, built from ``reads``' dicts: the arms table (swept axes, metrics, sort),
the charts, and the compare view (``evsys diff``'s differences, for two or more runs).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import yaml

from evsys.dashboard.ui.charts import ArmValue, Chart, axis_chart, line_chart
from evsys.report import format_number
from evsys.run_diff import diff_runs, flatten, show_metric, show_value
from evsys.tracking.wire import NONFINITE

MAX_AXES = 6
MAX_COMPARED = 10
_ABSENT = object()


# ---- the arms table ----------------------------------------------------------------------


@dataclass
class Column:
    key: str
    """``name``, ``status``, ``axis:<dotted key>`` or ``metric:<name>``: what ``?sort=`` names."""
    label: str
    numeric: bool = False
    sorted: bool = False
    href: str = ""


@dataclass
class ArmsTable:
    columns: list[Column]
    rows: list[dict[str, Any]]
    sort: str
    order: str
    sort_label: str


def swept_axes(arms: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The keys the arms differ on, each with every arm's value (``_ABSENT`` where an arm lacks
    it). Hydra overrides say what was swept; without them, the resolved configs' differences do."""
    from_overrides = [_override_keys(a.get("overrides")) for a in arms]
    keys = list(dict.fromkeys(k for keys in from_overrides for k in keys))
    flat = [flatten(a.get("config") or {}) for a in arms]
    if not keys:
        keys = sorted({k for f in flat for k in f})
    axes: dict[str, list[Any]] = {}
    for key in keys:
        values = [
            f.get(key, over.get(key, _ABSENT)) for f, over in zip(flat, from_overrides, strict=True)
        ]
        if len({repr(v) for v in values}) > 1:
            axes[key] = values
        if len(axes) == MAX_AXES:
            break
    return axes


def _override_keys(overrides: Any) -> dict[str, str]:
    out = {}
    for item in overrides or []:
        if isinstance(item, str) and "=" in item:
            key, value = item.split("=", 1)
            out[key.lstrip("+~")] = value
    return out


def arms_table(
    experiment: dict[str, Any], sort: str | None, order: str | None, base_url: str
) -> tuple[ArmsTable, dict[str, Any] | None, dict[str, list[Any]]]:
    """The arms table sorted by ``sort`` (default: the success metric, best first), the best arm
    (recorded at the sweep's end, else the current leader) and the swept axes."""
    arms = experiment["runs"]
    axes = swept_axes(arms)
    success = experiment.get("success_metric")
    maximize = experiment.get("direction") != "minimize"
    metric_names = sorted({m for a in arms for m in a["summary"]})
    if success in metric_names:
        metric_names.remove(success)
        metric_names.insert(0, success)
    columns = [Column("name", "arm"), Column("status", "status")]
    columns += [Column(f"axis:{k}", k, numeric=_all_numbers(v)) for k, v in axes.items()]
    columns += [Column(f"metric:{m}", m, numeric=True) for m in metric_names]

    keys = {c.key for c in columns}
    default = f"metric:{success}" if f"metric:{success}" in keys else "created"
    sort = sort if sort in keys else default
    order = order if order in ("asc", "desc") else _default_order(sort, maximize, success)

    best = _best_arm(experiment, arms, success, maximize)
    rows = []
    for index, arm in enumerate(arms):
        values = [_cell(axes[k][index]) for k in axes]
        values += [number(arm["summary"][m]) if m in arm["summary"] else "" for m in metric_names]
        sort_value = _sort_value(arm, sort, axes, index)
        rows.append(
            {
                "id": arm["id"],
                "name": arm["name"],
                "status": arm["status"],
                "cells": values,
                "best": best is not None and arm["id"] == best["id"],
                "_sort": sort_value,
            }
        )
    present = [r for r in rows if r["_sort"] is not None]
    present.sort(key=lambda r: r["_sort"], reverse=order == "desc")
    rows = present + [r for r in rows if r["_sort"] is None]  # missing values last either way

    for column in columns:
        column.sorted = column.key == sort
        flip = "asc" if order == "desc" else "desc"
        next_order = flip if column.sorted else _default_order(column.key, maximize, success)
        column.href = f"{base_url}?{urlencode({'sort': column.key, 'order': next_order})}"
    label = next((c.label for c in columns if c.sorted), "creation order")
    return ArmsTable(columns, rows, sort, order, label), best, axes


def _default_order(key: str, maximize: bool, success: str | None) -> str:
    if key == f"metric:{success}":
        return "desc" if maximize else "asc"
    return "desc" if key.startswith("metric:") else "asc"


def _sort_value(arm: dict[str, Any], sort: str, axes: dict[str, list[Any]], index: int) -> Any:
    """A key that orders numbers numerically and anything else as text; None when missing."""
    if sort == "created":
        return (0, index, "")
    if sort in ("name", "status"):
        value = arm.get(sort)
    elif sort.startswith("axis:"):
        value = axes[sort.removeprefix("axis:")][index]
    else:
        value = arm["summary"].get(sort.removeprefix("metric:"))
    if value is None or value is _ABSENT:
        return None
    if _is_number(value):
        return (0, float(value), "")
    return (1, 0.0, show_value(value) if not isinstance(value, str) else value)


def _best_arm(
    experiment: dict[str, Any], arms: list[dict[str, Any]], success: str | None, maximize: bool
) -> dict[str, Any] | None:
    """The recorded best arm, else the leader among completed arms; only a completed run is
    ever the best: a failed or unfinished arm's score says nothing about its setting."""
    recorded = experiment.get("best_run_id")
    if recorded:
        found = next((a for a in arms if a["id"] == recorded), None)
        if found is not None:  # recorded but not completed: no best, never another arm
            return found if completed(found) else None
    scored = [a for a in arms if completed(a) and _is_number(a["summary"].get(success))]
    if not success or not scored:
        return None
    pick = max if maximize else min
    return pick(scored, key=lambda a: a["summary"][success])


def completed(run: dict[str, Any] | None) -> bool:
    """Whether ``run`` finished well: the only kind of run the pages may call best."""
    return run is not None and run.get("status") == "completed"


def axis_charts(
    experiment: dict[str, Any], axes: dict[str, list[Any]], best: dict[str, Any] | None
) -> list[Chart]:
    """The success metric against each swept axis, one chart an axis."""
    success = experiment.get("success_metric")
    if not success:
        return []
    charts = []
    for axis, values in axes.items():
        points = [
            ArmValue(
                name=arm["name"],
                axis_value=value,
                score=arm["summary"][success],
                href=f"/runs/{quote(arm['id'], safe='')}",
                best=best is not None and arm["id"] == best["id"],
            )
            for arm, value in zip(experiment["runs"], values, strict=True)
            if value is not _ABSENT and _is_number(arm["summary"].get(success))
        ]
        if points:
            charts.append(axis_chart(axis, success, points))
    return charts


def curves(run: dict[str, Any]) -> list[Chart]:
    return [line_chart(name, points) for name, points in run["curves"].items()]


def _cell(value: Any) -> str:
    if value is _ABSENT:
        return ""
    return format_number(value) if _is_number(value) else str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _all_numbers(values: list[Any]) -> bool:
    present = [v for v in values if v is not _ABSENT]
    return bool(present) and all(_is_number(v) for v in present)


# ---- compare ---------------------------------------------------------------------------------


@dataclass
class Comparison:
    config: list[dict[str, Any]] = field(default_factory=list)
    """One row a differing config key: ``{key, cells: [{text, missing, differs}]}``."""
    metrics: list[dict[str, Any]] = field(default_factory=list)
    """One row a metric: ``{name, cells: [{text, delta}]}``, deltas against the first run."""


def compare(runs: list[dict[str, Any]]) -> Comparison:
    """``evsys diff`` for two or more runs: each run against the first, as the CLI pairs a and b
    (the same flattening, the same value formatting, the same deltas)."""
    records = [{"config": r.get("config") or {}, "metrics": r.get("summary") or {}} for r in runs]
    base = records[0]
    diffs = [diff_runs(base, other) for other in records[1:]]
    keys = sorted({k for d in diffs for k in (*d.changed, *d.added, *d.removed)})
    flat = [flatten(r["config"]) for r in records]
    result = Comparison()
    for key in keys:
        first = flat[0].get(key, _ABSENT)
        values = []
        for f in flat:
            value = f.get(key, _ABSENT)
            differs = value is not first and (
                value is _ABSENT
                or first is _ABSENT
                or value != first
                or type(value) is not type(first)
            )
            text = "(absent)" if value is _ABSENT else show_value(value)
            values.append({"text": text, "missing": value is _ABSENT, "differs": differs})
        result.config.append({"key": key, "cells": values})
    names = sorted({m for r in records for m in r["metrics"]})
    for name in names:
        values = [{"text": _metric_text(records[0]["metrics"].get(name)), "delta": ""}]
        for record, diff in zip(records[1:], diffs, strict=True):
            # a metric only later runs have is in neither a's nor this run's diff
            _, _, delta = diff.metrics.get(name, (None, None, None))
            shown = "" if delta is None else "0" if delta == 0 else format_number(delta, "+.4g")
            values.append({"text": _metric_text(record["metrics"].get(name)), "delta": shown})
        result.metrics.append({"name": name, "cells": values})
    return result


def _metric_text(value: Any) -> str:
    """As ``evsys diff`` shows a metric; NaN and infinities (stored by name) unquoted."""
    return value if isinstance(value, str) and value in NONFINITE else show_metric(value)


def run_ids_from_query(runs: str | None, run: list[str]) -> list[str]:
    """``?runs=a,b`` and/or ``?run=a&run=b`` (the arms table's checkboxes), in order, once each."""
    ids = [i.strip() for i in (runs or "").split(",")] + [i.strip() for i in run]
    return list(dict.fromkeys(i for i in ids if i))


# ---- formatting filters ----------------------------------------------------------------------


def pretty(value: Any) -> str:
    """A config or any JSON value as YAML (a scalar as JSON), for a <pre>; the template escapes it."""
    if isinstance(value, str):
        return value
    if not isinstance(value, dict | list):
        return json.dumps(value, default=str)
    try:
        return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, width=100).rstrip()
    except yaml.YAMLError:
        return json.dumps(value, indent=2, default=str)


def number(value: Any) -> str:
    if value is None:
        return "–"
    return format_number(value) if isinstance(value, int | float) else str(value)


def when(value: Any) -> str:
    """An ISO time as ``2026-11-30 06:22 UTC``."""
    if not isinstance(value, str) or len(value) < 16:
        return "" if value is None else str(value)
    return f"{value[:10]} {value[11:16]} UTC"


def filesize(value: Any) -> str:
    if not isinstance(value, int):
        return ""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)
