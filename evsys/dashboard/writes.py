"""``POST /sdk/writes``: apply a checked batch of writes in one transaction, idempotently.

Each write's id is claimed in ``applied_writes`` first (insert, do nothing on conflict): the ids
that come back are new and are applied in batch order; the others are duplicates and change
nothing. Object writes are upserts keyed by ``(project, id)``, so that a create replayed under a
new write id still lands, and each field keeps the value written last by the client's clock
(:mod:`evsys.dashboard.object_writes`); an update of an object the project does not hold is refused
(:class:`UnknownObject`) unless its create comes earlier in the batch or the write says
``create_queued`` (its client made the create: mirrors reach the service in any order). Step
metrics are gathered and upserted at the end of the batch: a value replaces the one held only
when it was written later (the write's client time; a row or write without one counts as
oldest), with the dialect's ``ON CONFLICT ... WHERE`` so that it holds on SQLite and PostgreSQL
alike, under concurrent batches too, whatever order the writes arrive in.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from evsys.dashboard.models import (
    AppliedWrite,
    Base,
    BenchmarkRecord,
    EvalRun,
    Experiment,
    Generation,
    Prediction,
    Run,
    StepMetric,
    utcnow,
)
from evsys.dashboard.object_writes import upsert_object
from evsys.tracking.wire import MAX_INT, UPDATES, wire_number

# op → the table it upserts into; run.steps and predictions.add have their own code.
UPSERTS = {
    "experiment.create": Experiment,
    "experiment.update": Experiment,
    "generation.create": Generation,
    "generation.update": Generation,
    "run.create": Run,
    "run.update": Run,
    "eval_run.create": EvalRun,
    "benchmark.record": BenchmarkRecord,
}
# The dialect's INSERT (sqlite.insert or postgresql.insert): both have on_conflict_do_*.
Insert = Callable[[Any], Any]


class UnknownObject(LookupError):
    """An update of an object the project does not hold (and no create of it queued)."""

    def __init__(self, index: int, what: str, object_id: str):
        self.index = index
        super().__init__(
            f"writes[{index}].data.id: no {what} {object_id!r} in this project (create it first)"
        )


def apply_batch(session: Session, project_id: str, writes: list[dict[str, Any]]) -> tuple[int, int]:
    """Apply ``writes`` for ``project_id``: each checked by :func:`evsys.tracking.wire.check_write`,
    its data passed through :func:`clean`. Returns ``(applied, duplicates)``; the caller commits."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    claimed = _claim(session, insert, project_id, writes)
    # (run, step, name) -> (written at, value): the newest of the batch, the later one on a tie
    steps: dict[tuple[str, int, str], tuple[float | None, Any]] = {}
    created: set[tuple[str, str]] = set()  # (table, id) of the creates applied so far
    applied = 0
    for index, write in enumerate(writes):
        if write["id"] not in claimed:
            continue
        claimed.discard(write["id"])  # the same id twice in one batch: the second is a duplicate
        applied += 1
        op, data = write["op"], write["data"]
        if op == "run.steps":
            written_at = _finite(write.get("time"))
            for entry in data["steps"]:
                for name, value in entry["metrics"].items():
                    key = (data["run_id"], entry["step"], name)
                    held = steps.get(key)
                    if held is None or not _older(written_at, held[0]):
                        steps[key] = (written_at, value)
        elif op == "predictions.add":
            _add_predictions(session, insert, project_id, data)
        else:
            model = UPSERTS[op]
            if op in UPDATES and not write.get("create_queued"):
                _check_exists(session, model, project_id, data["id"], created, index)
            created.add((model.__tablename__, data["id"]))
            when, written_at = _time(write.get("time")), _finite(write.get("time"))
            upsert_object(session, insert, model, project_id, data, when, written_at)
    _upsert_steps(session, insert, project_id, steps)
    return applied, len(writes) - applied


def _older(written_at: float | None, than: float | None) -> bool:
    """Whether a value written at ``written_at`` is older than one written at ``than``; no
    time is older than any time (two without one: the later to arrive wins, as before)."""
    if than is None:
        return False
    return written_at is None or written_at < than


def _check_exists(
    session: Session,
    model: type[Base],
    project_id: str,
    object_id: str,
    created: set[tuple[str, str]],
    index: int,
) -> None:
    if (model.__tablename__, object_id) in created:
        return
    found = session.execute(
        select(model.id).where(model.project_id == project_id, model.id == object_id)
    ).first()
    if found is None:
        raise UnknownObject(index, model.__tablename__.removesuffix("s"), object_id)


def _claim(
    session: Session, insert: Insert, project_id: str, writes: list[dict[str, Any]]
) -> set[str]:
    rows = {
        w["id"]: {
            "project_id": project_id,
            "id": w["id"],
            "op": w["op"],
            "time": _finite(w.get("time")),
        }
        for w in writes
    }
    if not rows:
        return set()
    # Core executemany on the session's connection (not the ORM's bulk path, which costs per
    # row): one compiled statement, the rows batched into multi-row INSERTs by SQLAlchemy.
    statement = (
        insert(AppliedWrite)
        .on_conflict_do_nothing(index_elements=["project_id", "id"])
        .returning(AppliedWrite.id)
    )
    ordered = sorted(rows.values(), key=lambda row: row["id"])  # one lock order for all
    return set(session.connection().execute(statement, ordered).scalars())


def _add_predictions(session: Session, insert: Insert, project_id: str, data: dict) -> None:
    rows = [
        {
            "project_id": project_id,
            "batch_id": data["id"],
            "position": position,
            "run_id": data["run_id"],
            "eval_run_id": data.get("eval_run_id"),
            "prompt": row["prompt"],
            "completion": row["completion"],
            "expected": row.get("expected"),
            "passed": row.get("passed"),
            # NaN and infinities by name (no portable REAL holds them), as step metrics' are
            "score": None if isinstance(row.get("score"), str) else row.get("score"),
            "score_nonfinite": row.get("score") if isinstance(row.get("score"), str) else None,
            "meta": row.get("meta"),
        }
        for position, row in enumerate(data["rows"])
    ]
    if rows:
        session.connection().execute(
            insert(Prediction).on_conflict_do_nothing(
                index_elements=["project_id", "batch_id", "position"]
            ),
            rows,
        )


def _upsert_steps(session: Session, insert: Insert, project_id: str, steps: dict) -> None:
    # Sorted, so that concurrent batches lock rows in one order and cannot deadlock each other.
    rows = [
        {
            "project_id": project_id,
            "run_id": run_id,
            "step": step,
            "name": name,
            "value": None if value.__class__ is str else value,
            "nonfinite": value if value.__class__ is str else None,
            "written_at": written_at,
        }
        for (run_id, step, name), (written_at, value) in sorted(
            steps.items(), key=lambda item: item[0]
        )
    ]
    if not rows:
        return
    statement = insert(StepMetric)
    new, held = statement.excluded, StepMetric.__table__.c
    session.connection().execute(
        statement.on_conflict_do_update(
            index_elements=["project_id", "run_id", "step", "name"],
            set_={"value": new.value, "nonfinite": new.nonfinite, "written_at": new.written_at},
            # the newer value stays, whichever arrived last (see _older)
            where=or_(
                held.written_at.is_(None),
                and_(new.written_at.is_not(None), new.written_at >= held.written_at),
            ),
        ),
        rows,
    )


MAX_DEPTH = 64  # JSON nesting: deeper values hit recursion and PostgreSQL's stack limits


class TooDeep(ValueError):
    """A value nested deeper than MAX_DEPTH."""


def clean(value: Any, depth: int = 0) -> Any:
    """``value`` as both databases store it: NaN and infinities become their names
    (``wire.NONFINITE``: JSONB has no NaN), NUL characters and lone surrogates in text are
    replaced (PostgreSQL text takes neither), integers past 64 bits become floats (past a
    float's range, null). Raises :class:`TooDeep` past MAX_DEPTH."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("utf-8")
        return value
    if isinstance(value, float):
        return wire_number(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        try:
            return clean(float(value))
        except OverflowError:
            return None
    if isinstance(value, dict | list) and depth >= MAX_DEPTH:
        raise TooDeep(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        return {clean(key): clean(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [clean(item, depth + 1) for item in value]
    return value


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def _time(value: Any) -> datetime:
    """The write's client time (the moment it happened, not when a later sync delivered it)."""
    seconds = _finite(value)
    if seconds is None:
        return utcnow()
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return utcnow()
