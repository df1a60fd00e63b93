"""The create or update of one experiment, generation or run: each field keeps the value written
last by the client's clock, whatever order the writes arrive in.

An object is written by several writers (the sweep that made the experiment, each arm, a mirror
synced days later), and a write carries its client time. The object's ``field_times`` holds, per
field, when the value it has was written; a write sets only the fields it writes later than that
(an older write's other fields still land). A write without a time counts as oldest, as with step
metrics (two without one: the later to arrive wins). The row is locked while it is compared
(``SELECT … FOR UPDATE`` on PostgreSQL; SQLite writes one transaction at a time), so concurrent
batches cannot interleave between the read and the write. Objects written once (an eval run, a
benchmark record) are plain upserts: a replayed create lands as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from evsys.dashboard.models import Base

Insert = Callable[[Any], Any]


def upsert_object(
    session: Session,
    insert: Insert,
    model: type[Base],
    project_id: str,
    data: dict[str, Any],
    when: datetime,
    written_at: float | None,
) -> None:
    """Create ``data["id"]`` with ``data``, or set those of its fields ``data`` writes later."""
    fields = {key: value for key, value in data.items() if key != "id"}
    times = {key: written_at for key in fields} if written_at is not None else {}
    table = model.__table__
    connection = session.connection()
    if "field_times" not in table.c:  # written once (an eval run, a benchmark record): upsert
        statement = insert(model).values(
            project_id=project_id, id=data["id"], created_at=when, updated_at=when, **fields
        )
        changes = {name: statement.excluded[name] for name in [*fields, "updated_at"]}
        connection.execute(
            statement.on_conflict_do_update(index_elements=["project_id", "id"], set_=changes)
        )
        return
    key = (table.c.project_id == project_id, table.c.id == data["id"])
    for _ in range(2):  # a create that loses a race to another batch's reads the winner's row
        held = connection.execute(select(table.c.field_times).where(*key).with_for_update()).first()
        if held is not None:
            break
        created = connection.execute(
            insert(model)
            .values(
                project_id=project_id,
                id=data["id"],
                created_at=when,
                updated_at=when,
                field_times=times,
                **fields,
            )
            .on_conflict_do_nothing(index_elements=["project_id", "id"])
        )
        if created.rowcount:
            return
    assert held is not None, "a row that exists after a conflicting insert"
    held_times: dict[str, float] = dict(held[0] or {})
    newer = {
        name: value
        for name, value in fields.items()
        if not _older(written_at, held_times.get(name))
    }
    if not newer:
        return  # every field was written later by someone else: nothing changes
    held_times |= {name: written_at for name in newer if written_at is not None}
    connection.execute(
        update(table).where(*key).values(**newer, field_times=held_times, updated_at=when)
    )


def _older(written_at: float | None, than: float | None) -> bool:
    """Whether a value written at ``written_at`` is older than one written at ``than``; no
    time is older than any time (two without one: the later to arrive wins)."""
    if than is None:
        return False
    return written_at is None or written_at < than
