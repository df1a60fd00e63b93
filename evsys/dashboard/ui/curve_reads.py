"""Curves of many runs at once, for the overlaid charts: one query for a metric of every run
asked for (no query per run), downsampled by the database so that a thousand arms of thousands
of steps stay small and fast to send and draw.

The x range (steps, or seconds since each run's first value) is cut into at most ``points``
equal buckets shared by all the runs (so their curves overlay on common x values); each
bucket of a run gives its mean x, its mean value and its lowest and highest value (the spikes a
mean would hide travel as ``low`` and ``high``). A bucket of one step is that step's value.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Integer, cast, func, select
from sqlalchemy.orm import Session

from evsys.dashboard.models import StepMetric

X_MODES = ("step", "time")
DEFAULT_POINTS = 200
MAX_POINTS = 2000
MAX_METRICS = 200
POINT_BUDGET = 50_000
"""Points in one answer at most: many runs get fewer buckets each (a thousand runs, 50)."""
MIN_POINTS = 20
BAND_RUNS = 20
"""Up to this many runs, each bucket's lowest and highest value travel too (a band)."""
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
) -> dict[str, Curve]:
    """Each run's curve of ``metric`` in x order, keyed by run id (runs without a value are
    left out). NaN and infinities are None (a gap). ``points=None``: every point as logged;
    else at most ``points`` buckets of x (shared by the runs), each its mean x and value and
    its lowest and highest value, computed by the database."""
    out: dict[str, Curve] = {}
    if points is not None:
        points = max(min(points, MIN_POINTS), min(points, POINT_BUDGET // max(len(run_ids), 1)))
    for chunk in _chunks(run_ids):
        scope = (
            StepMetric.project_id == project_id,
            StepMetric.name == metric,
            StepMetric.run_id.in_(chunk),
        )
        if x_mode == "time":
            rows = _time_buckets(db, scope, points)
        elif points is None:
            rows = db.execute(
                select(StepMetric.run_id, StepMetric.step, StepMetric.value, StepMetric.value)
                .where(*scope)
                .order_by(StepMetric.run_id, StepMetric.step)
            )
            rows = ((r, x, y, y, y) for r, x, y, _ in rows)
        else:
            rows = _step_buckets(db, scope, points)
        for run_id, x, y, low, high in rows:
            curve = out.setdefault(run_id, Curve())
            curve.x.append(float(x))  # PostgreSQL's avg of integers is a Decimal
            curve.y.append(y)
            curve.low.append(low)
            curve.high.append(high)
    return {run_id: out[run_id] for run_id in run_ids if run_id in out}


@dataclass
class Curve:
    x: list[float] = field(default_factory=list)
    y: list[float | None] = field(default_factory=list)
    low: list[float | None] = field(default_factory=list)
    high: list[float | None] = field(default_factory=list)


def _step_buckets(db: Session, scope: tuple[Any, ...], points: int) -> Iterable[tuple]:
    low, high = db.execute(
        select(func.min(StepMetric.step), func.max(StepMetric.step)).where(*scope)
    ).one()
    if low is None:
        return []
    width = max(1, math.ceil((high - low + 1) / points))
    bucket = ((StepMetric.step - low) // width).label("bucket")
    return db.execute(
        select(
            StepMetric.run_id,
            func.avg(StepMetric.step) if width > 1 else func.min(StepMetric.step),
            func.avg(StepMetric.value),
            func.min(StepMetric.value),
            func.max(StepMetric.value),
        )
        .where(*scope)
        .group_by(StepMetric.run_id, bucket)
        .order_by(StepMetric.run_id, bucket)
    )


def _time_buckets(db: Session, scope: tuple[Any, ...], points: int | None) -> Iterable[tuple]:
    """Seconds since each run's first value (the client's clock), bucketed on a grid shared
    by the runs; values written before the service kept times have no place here."""
    timed = (*scope, StepMetric.written_at.is_not(None))
    starts = (
        select(
            StepMetric.run_id.label("run_id"),
            func.min(StepMetric.written_at).label("t0"),
            func.max(StepMetric.written_at).label("t1"),
        )
        .where(*timed)
        .group_by(StepMetric.run_id)
        .subquery()
    )
    since = StepMetric.written_at - starts.c.t0
    joined = (StepMetric, starts, starts.c.run_id == StepMetric.run_id)
    span = db.execute(select(func.max(starts.c.t1 - starts.c.t0))).scalar()
    if span is None:
        return []
    width = span / points if points and span > 0 else 1e-3
    bucket = cast(since / width, Integer).label("bucket")  # PostgreSQL rounds, SQLite truncates
    return db.execute(
        select(
            StepMetric.run_id,
            func.avg(since),
            func.avg(StepMetric.value),
            func.min(StepMetric.value),
            func.max(StepMetric.value),
        )
        .join_from(*joined)
        .where(*timed)
        .group_by(StepMetric.run_id, bucket)
        .order_by(StepMetric.run_id, bucket)
    )


def group_curves(found: dict[str, Curve], group_of: dict[str, str]) -> dict[str, Curve]:
    """Each group's mean curve over its runs, step by step (the runs share the grid), with the
    standard deviation as ``low``/``high`` (mean ∓ std; 0 where one run has the step)."""
    by_group: dict[str, dict[float, list[float]]] = {}
    for run_id, curve in found.items():
        steps = by_group.setdefault(group_of[run_id], {})
        for x, y in zip(curve.x, curve.y, strict=True):
            if y is not None:
                steps.setdefault(x, []).append(y)
    out = {}
    for group, steps in by_group.items():
        curve = Curve()
        for x in sorted(steps):
            mean = statistics.fmean(steps[x])
            std = statistics.stdev(steps[x]) if len(steps[x]) > 1 else 0.0
            curve.x.append(x)
            curve.y.append(mean)
            curve.low.append(mean - std)
            curve.high.append(mean + std)
        out[group] = curve
    return out


def curve_rows(names: dict[str, str], found: dict[str, Curve]) -> list[dict[str, Any]]:
    """The curves as JSON rows for the charts: ``{id, name, x, y}`` each, with ``low`` and
    ``high`` (each bucket's extremes) when there are at most ``BAND_RUNS`` of them."""
    band = len(found) <= BAND_RUNS
    return [
        {"id": run_id, "name": names.get(run_id, run_id), "x": c.x, "y": c.y}
        | ({"low": c.low, "high": c.high} if band else {})
        for run_id, c in found.items()
    ]


def _chunks(ids: Sequence[str]) -> list[Sequence[str]]:
    return [ids[i : i + IN_CHUNK] for i in range(0, len(ids), IN_CHUNK)]
