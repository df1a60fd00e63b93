"""Curves of many runs at once, for the overlaid charts: one query for a metric of every run
asked for (no query per run), each run's curve downsampled on the server so that a thousand
arms of thousands of steps stay small and fast to send and draw.

Downsampling keeps the lowest and the highest point of each of ``points / 2`` equal buckets of
the run's x range (in x order): a spike survives, which a stride or a mean would hide. By time,
x is seconds since the run's first value (the client's clock when it logged it), snapped to a
grid of ``points`` cells so that the runs share x values and overlay without a point per run.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from evsys.dashboard.models import StepMetric

X_MODES = ("step", "time")
DEFAULT_POINTS = 200
MAX_POINTS = 2000
MAX_METRICS = 200
IN_CHUNK = 500
"""Run ids per ``IN (…)``: well under every database's limit on bound parameters."""


def metric_names(db: Session, project_id: str, run_ids: Sequence[str]) -> list[str]:
    """The names of the step metrics any of ``run_ids`` logged, sorted."""
    names: set[str] = set()
    for chunk in _chunks(run_ids):
        names.update(
            db.scalars(
                select(StepMetric.name)
                .where(StepMetric.project_id == project_id, StepMetric.run_id.in_(chunk))
                .distinct()
            )
        )
    return sorted(names)[:MAX_METRICS]


def curves(
    db: Session,
    project_id: str,
    run_ids: Sequence[str],
    metric: str,
    *,
    x_mode: str = "step",
    points: int | None = DEFAULT_POINTS,
) -> dict[str, tuple[list[float], list[float | None]]]:
    """Each run's curve of ``metric`` as ``(xs, ys)`` in x order, keyed by run id (runs without
    a value are left out). NaN and infinities are None (a gap). ``points=None``: every point."""
    by_run: dict[str, list[tuple[float, float | None]]] = defaultdict(list)
    for chunk in _chunks(run_ids):
        rows = db.execute(
            select(
                StepMetric.run_id, StepMetric.step, StepMetric.value, StepMetric.written_at
            ).where(
                StepMetric.project_id == project_id,
                StepMetric.name == metric,
                StepMetric.run_id.in_(chunk),
            )
        )
        for run_id, step, value, written_at in rows:
            if x_mode == "time":
                if written_at is None:
                    continue  # written before the service kept times: no place on a time axis
                by_run[run_id].append((written_at, value))
            else:
                by_run[run_id].append((step, value))
    out = {}
    for run_id in run_ids:
        found = by_run.get(run_id)
        if not found:
            continue
        found.sort(key=lambda p: p[0])
        if x_mode == "time":
            found = _relative_time(found, points)
        if points is not None:
            found = downsample(found, points)
        out[run_id] = ([x for x, _ in found], [y for _, y in found])
    return out


def downsample(
    points: list[tuple[float, float | None]], limit: int
) -> list[tuple[float, float | None]]:
    """At most ``limit`` of ``points`` (sorted by x): each bucket's lowest and highest value,
    in x order; a gap (None) is kept where a bucket has no finite value, and the last point
    always."""
    if len(points) <= limit:
        return points
    buckets = max(1, limit // 2)
    low_x, high_x = points[0][0], points[-1][0]
    width = (high_x - low_x) / buckets or 1.0
    picked: dict[int, list[int]] = {}
    for index, (x, y) in enumerate(points):
        slot = min(int((x - low_x) / width), buckets - 1)
        best = picked.get(slot)
        if best is None:
            picked[slot] = [index, index]
            continue
        if y is None:
            continue
        low, high = points[best[0]][1], points[best[1]][1]
        if low is None or y < low:
            best[0] = index
        if high is None or y > high:
            best[1] = index
    keep = sorted({i for pair in picked.values() for i in pair} | {len(points) - 1})
    return [points[i] for i in keep][:limit]


def _relative_time(
    points: list[tuple[float, float | None]], cells: int | None
) -> list[tuple[float, float | None]]:
    """Times as seconds since the first, snapped to ``cells`` cells of the run's span (one
    value a cell, the last written)."""
    start = points[0][0]
    span = points[-1][0] - start
    if not cells or span <= 0:
        return [(round(t - start, 3), y) for t, y in points]
    cell = _round_cell(span / cells)
    snapped: dict[float, float | None] = {}
    for t, y in points:
        snapped[round(round((t - start) / cell) * cell, 6)] = y
    return sorted(snapped.items())


def _round_cell(width: float) -> float:
    """``width`` rounded up to 1, 2 or 5 times a power of ten, so runs of similar length share
    a grid."""
    power = 10 ** math.floor(math.log10(width))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= width)


def curve_rows(
    names: dict[str, str], found: dict[str, tuple[list[float], list[float | None]]]
) -> list[dict[str, Any]]:
    """The curves as JSON rows for the charts: ``{id, name, x, y}`` each."""
    return [
        {"id": run_id, "name": names.get(run_id, run_id), "x": xs, "y": ys}
        for run_id, (xs, ys) in found.items()
    ]


def _chunks(ids: Sequence[str]) -> list[Sequence[str]]:
    return [ids[i : i + IN_CHUNK] for i in range(0, len(ids), IN_CHUNK)]
