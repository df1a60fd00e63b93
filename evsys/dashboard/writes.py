"""``POST /sdk/writes``: apply a checked batch of writes in one transaction, idempotently.

Each write's id is claimed in ``applied_writes`` first (insert, do nothing on conflict): the ids
that come back are new and are applied in batch order; the others are duplicates and change
nothing. Object writes are upserts keyed by ``(project, id)``, so that a create replayed under a
new write id, or an update that reaches the service before its create, still lands. Step
metrics are gathered and upserted at the end of the batch (a later value of a (run, step, name)
replaces the earlier one), with the dialect's ``ON CONFLICT`` so that it holds on SQLite and
PostgreSQL alike, under concurrent batches too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

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
from evsys.tracking.wire import MAX_INT

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


def apply_batch(session: Session, project_id: str, writes: list[dict[str, Any]]) -> tuple[int, int]:
    """Apply ``writes`` for ``project_id``: each checked by :func:`evsys.tracking.wire.check_write`,
    its data passed through :func:`clean`. Returns ``(applied, duplicates)``; the caller commits."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    claimed = _claim(session, insert, project_id, writes)
    steps: dict[tuple[str, int, str], float | None] = {}
    applied = 0
    for write in writes:
        if write["id"] not in claimed:
            continue
        claimed.discard(write["id"])  # the same id twice in one batch: the second is a duplicate
        applied += 1
        op, data = write["op"], write["data"]
        when = _time(write.get("time"))
        if op == "run.steps":
            for entry in data["steps"]:
                for name, value in entry["metrics"].items():
                    steps[(data["run_id"], entry["step"], name)] = value
        elif op == "predictions.add":
            _add_predictions(session, insert, project_id, data)
        else:
            _upsert(session, insert, UPSERTS[op], project_id, data, when)
    _upsert_steps(session, insert, project_id, steps)
    return applied, len(writes) - applied


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


def _upsert(
    session: Session, insert: Insert, model: type[Base], project_id: str, data: dict, when: datetime
) -> None:
    fields = {key: value for key, value in data.items() if key != "id"}
    statement = insert(model).values(
        project_id=project_id, id=data["id"], created_at=when, updated_at=when, **fields
    )
    changes = {key: statement.excluded[key] for key in [*fields, "updated_at"]}
    session.connection().execute(
        statement.on_conflict_do_update(index_elements=["project_id", "id"], set_=changes)
    )


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
            "score": row.get("score"),
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
        {"project_id": project_id, "run_id": run_id, "step": step, "name": name, "value": value}
        for (run_id, step, name), value in sorted(steps.items(), key=lambda item: item[0])
    ]
    if not rows:
        return
    statement = insert(StepMetric)
    session.connection().execute(
        statement.on_conflict_do_update(
            index_elements=["project_id", "run_id", "step", "name"],
            set_={"value": statement.excluded.value},
        ),
        rows,
    )


MAX_DEPTH = 64  # JSON nesting: deeper values hit recursion and PostgreSQL's stack limits


class TooDeep(ValueError):
    """A value nested deeper than MAX_DEPTH."""


def clean(value: Any, depth: int = 0) -> Any:
    """``value`` as both databases store it: NaN and infinities become null (JSONB has no
    NaN), NUL characters and lone surrogates in text are replaced (PostgreSQL text takes
    neither), integers past 64 bits become floats. Raises :class:`TooDeep` past MAX_DEPTH."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("utf-8")
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
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
