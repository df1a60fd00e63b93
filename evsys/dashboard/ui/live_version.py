"""A version of what an experiment's live fragment shows, cheap enough for every poll.

The page polls ``/experiments/{id}/live`` every 2 s while a sweep runs, and rendering it reads
every arm (a thousand arms: a tenth of a second or more of the server's time). Most polls find
nothing changed: step metrics stream in, but the fragment shows the experiment, its arms and
its generations, which change when an arm starts or ends. So the fragment carries an ``ETag``:
a digest of those rows' stored text (no JSON parsed, no ORM objects), and a poll that sends it
back in ``If-None-Match`` is answered ``304 Not Modified`` when the digest is the same.

The digest covers the rows themselves, not their ``updated_at``: writes carry the client's
clock, so a later write can have an earlier time, and a time says nothing of what changed.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import Text, cast, or_, select
from sqlalchemy.orm import Session

from evsys.dashboard.models import Experiment, Generation, Run

SALT = secrets.token_bytes(8)
"""New in each process: a restarted service (perhaps newer templates) renders afresh."""


def experiment_version(db: Session, project_id: str, experiment_id: str, query: str) -> str | None:
    """An ETag for the live fragment of ``experiment_id`` asked with ``query`` (its table's
    filters, sort and page); None when the experiment is not in the project."""
    digest = hashlib.blake2b(SALT + query.encode(), digest_size=16)
    experiments = Experiment.__table__
    found = False
    for table, where in (
        (
            experiments,
            or_(
                experiments.c.id == experiment_id,
                experiments.c.parent_experiment_id == experiment_id,
            ),
        ),
        (Run.__table__, Run.__table__.c.experiment_id == experiment_id),
        (Generation.__table__, Generation.__table__.c.experiment_id == experiment_id),
    ):
        columns = [table.c.id] + [cast(c, Text) for c in table.c if c.key != "project_id"]
        rows = db.execute(
            select(*columns).where(table.c.project_id == project_id, where).order_by(table.c.id)
        )
        digest.update(table.name.encode())
        for row in rows:
            found = found or (table is experiments and row[0] == experiment_id)
            digest.update(repr(tuple(row)).encode())
    return f'"{digest.hexdigest()}"' if found else None
