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
import sqlite3
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import Float, Integer, Select, and_, bindparam, case, cast, func, select, text
from sqlalchemy.orm import Session

from evsys.dashboard.models import Run, StepMetric

X_MODES = ("step", "time")
DEFAULT_POINTS = 200
MAX_POINTS = 2000
MAX_METRICS = 200
POINT_BUDGET = 50_000
"""Points in one answer at most: many runs get fewer buckets each (a thousand runs, 50)."""
MIN_POINTS = 20
BAND_RUNS = 20
"""Up to this many runs, each bucket's lowest and highest value travel too (a band)."""
IN_CHUNK = 10_000
"""Run ids per ``IN (…)`` at most (PostgreSQL takes 65,535 parameters); SQLite's own limit
lowers it (999 parameters before 3.32, 32,766 since)."""
OTHER_PARAMETERS = 99
"""Bound parameters of a curve query beside its run ids, at most."""

STEPS = StepMetric.__table__.c
"""The table's columns: selects of them come back as plain rows (no ORM objects to build)."""
RUNS = Run.__table__.c

# The names each run logged, by a skip scan of the (project, run, name, …) index: one seek per
# (run, name) instead of reading every step of every run (a thousand runs of 300 steps: 5×
# faster on both databases).
_NAMES = text(
    """
    WITH RECURSIVE found(run_id, name) AS (
        SELECT r.id, (SELECT min(s.name) FROM step_metrics s
                      WHERE s.project_id = :project AND s.run_id = r.id)
        FROM runs r WHERE r.project_id = :project AND r.id IN :ids
        UNION ALL
        SELECT f.run_id, (SELECT min(s.name) FROM step_metrics s
                          WHERE s.project_id = :project AND s.run_id = f.run_id
                          AND s.name > f.name)
        FROM found f WHERE f.name IS NOT NULL
    )
    SELECT DISTINCT name FROM found WHERE name IS NOT NULL
    """
).bindparams(bindparam("ids", expanding=True))


def metric_names(db: Session, project_id: str, run_ids: Sequence[str]) -> list[str]:
    """The names of the step metrics any of ``run_ids`` logged, sorted."""
    names: set[str] = set()
    for chunk in _chunks(db, run_ids):
        names.update(db.scalars(_NAMES, {"project": project_id, "ids": list(chunk)}))
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
    if points is not None:
        points = max(min(points, MIN_POINTS), min(points, POINT_BUDGET // max(len(run_ids), 1)))
    chunks = _chunks(db, run_ids)
    scopes = [
        (STEPS.project_id == project_id, STEPS.name == metric, STEPS.run_id.in_(chunk))
        for chunk in chunks
    ]
    if x_mode == "time":
        queries = _time_buckets(db, scopes, points)
    elif points is None:
        queries = [
            select(STEPS.run_id, cast(STEPS.step, Float), STEPS.value)
            .where(*scope)
            .order_by(STEPS.run_id, STEPS.step)
            for scope in scopes
        ]
    else:
        low, high = _step_range(db, project_id, metric, chunks)
        queries = [] if low is None else _step_buckets(scopes, low, high, points)
    found: dict[str, Curve] = {}
    for query in queries:
        found.update(_collect(db.execute(query).all()))
    return {run_id: found[run_id] for run_id in run_ids if run_id in found}


@dataclass
class Curve:
    x: list[float] = field(default_factory=list)
    y: list[float | None] = field(default_factory=list)
    low: list[float | None] = field(default_factory=list)
    high: list[float | None] = field(default_factory=list)


def _collect(rows: Iterable[Any]) -> dict[str, Curve]:
    """Rows of ``(run id, x, y[, low, high])`` in run order as curves: a run's rows turned into
    columns at once (a thousand runs of 50 buckets: no object a point)."""
    out = {}
    for run_id, group in groupby(rows, key=itemgetter(0)):
        _, x, *values = zip(*group, strict=True)
        if len(values) == 1:  # every point as logged: its value is its mean, low and high
            values *= 3
        y, low, high = (list(v) for v in values)
        out[run_id] = Curve(list(x), _finite(y), low, high)  # only a mean can overflow
    return out


def _finite(values: list[float | None]) -> list[float | None]:
    """``values`` with NaN and infinities as None. An average of huge values can overflow;
    fsum tells in one pass in C whether any value is not finite (or sums past the largest
    float), and only then is each value looked at."""
    try:
        if math.isfinite(math.fsum(v for v in values if v is not None)):
            return values
    except (OverflowError, ValueError):
        pass
    return [v if v is not None and math.isfinite(v) else None for v in values]


def _step_range(
    db: Session, project_id: str, metric: str, chunks: list[Sequence[str]]
) -> tuple[int | None, int | None]:
    """The first and last step any of the runs logged ``metric`` at: each run's own first and
    last step are one seek of the index (not a read of all its steps)."""

    def each_run(aggregate: Any) -> Any:
        return (
            select(aggregate(STEPS.step))
            .where(STEPS.project_id == project_id, STEPS.run_id == RUNS.id, STEPS.name == metric)
            .scalar_subquery()
        )

    lows, highs = [], []
    for chunk in chunks:
        low, high = db.execute(
            select(func.min(each_run(func.min)), func.max(each_run(func.max))).where(
                RUNS.project_id == project_id, RUNS.id.in_(chunk)
            )
        ).one()
        if low is not None:
            lows.append(low)
            highs.append(high)
    return (min(lows), max(highs)) if lows else (None, None)


def _step_buckets(scopes: list[tuple[Any, ...]], low: int, high: int, points: int) -> list[Select]:
    """A query a chunk of runs, on the grid of all the runs: from step ``low`` to ``high``."""
    width = max(1, math.ceil((high - low + 1) / points))
    # inline numbers (ours, not the request's): GROUP BY and ORDER BY then read the same, and
    # SQLite sorts once instead of twice
    first, size = (bindparam(None, n, literal_execute=True) for n in (low, width))
    bucket = ((STEPS.step - first) // size).label("bucket")
    x = func.avg(STEPS.step) if width > 1 else func.min(STEPS.step)
    return [
        select(
            STEPS.run_id,
            cast(x, Float),  # PostgreSQL's avg of integers is a numeric
            func.avg(STEPS.value),
            func.min(STEPS.value),
            func.max(STEPS.value),
        )
        .where(*scope)
        .group_by(STEPS.run_id, bucket)
        .order_by(STEPS.run_id, bucket)
        for scope in scopes
    ]


def _time_buckets(db: Session, scopes: list[tuple[Any, ...]], points: int | None) -> list[Select]:
    """Seconds since each run's first value (the client's clock), bucketed on a grid shared
    by the runs; values written before the service kept times have no place here."""
    timed = [(*scope, STEPS.written_at.is_not(None)) for scope in scopes]
    # Each run's first and last time, with the index's leading columns: the bucketing joins
    # back on all three, so SQLite reads each run's steps by the index from its start (not each
    # step looking its run's start up: a quarter faster).
    starts = [
        select(
            STEPS.project_id,
            STEPS.name,
            STEPS.run_id,
            func.min(STEPS.written_at).label("t0"),
            func.max(STEPS.written_at).label("t1"),
        )
        .where(*where)
        .group_by(STEPS.project_id, STEPS.name, STEPS.run_id)
        .cte()
        for where in timed
    ]
    width: Any = 1e-3  # seconds: every point as logged
    if len(starts) == 1 and points:  # the grid from the same starts, in the one statement
        span = select(func.max(starts[0].c.t1 - starts[0].c.t0)).scalar_subquery()
        width = case((span > 0, span / points), else_=1e-3)
    elif points:  # the grid of all the chunks' runs, a statement each
        spans = [db.execute(select(func.max(s.c.t1 - s.c.t0))).scalar() for s in starts]
        span = max((s for s in spans if s is not None), default=None)
        if span is None:
            return []
        width = span / points if span > 0 else 1e-3
    queries = []
    for start in starts:
        since = STEPS.written_at - start.c.t0
        bucket = cast(since / width, Integer).label("bucket")  # PostgreSQL rounds, SQLite truncates
        same_run = and_(
            STEPS.project_id == start.c.project_id,
            STEPS.name == start.c.name,
            STEPS.run_id == start.c.run_id,
        )
        queries.append(
            select(
                STEPS.run_id,
                func.avg(since),
                func.avg(STEPS.value),
                func.min(STEPS.value),
                func.max(STEPS.value),
            )
            .select_from(start.join(StepMetric.__table__, same_run))
            .where(STEPS.written_at.is_not(None))
            .group_by(STEPS.run_id, bucket)
            .order_by(STEPS.run_id, bucket)
        )
    return queries


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


def _chunks(db: Session, ids: Sequence[str]) -> list[Sequence[str]]:
    """``ids`` in as few ``IN (…)`` lists as the database takes: each chunk is a query (and a
    read of the index) of its own, so a sweep's arms go all at once where they can."""
    size = IN_CHUNK
    if db.get_bind().dialect.name == "sqlite":
        connection = db.connection().connection.dbapi_connection
        getlimit = getattr(connection, "getlimit", None)  # the sqlite3 module's, Python 3.11+
        limit = getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) if getlimit else 999
        size = min(size, limit - OTHER_PARAMETERS)
    return [ids[i : i + size] for i in range(0, len(ids), size)]
