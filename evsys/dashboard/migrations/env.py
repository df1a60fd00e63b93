"""Alembic environment of the dashboard: run by :func:`evsys.dashboard.db.upgrade` with the
connection it hands over in ``config.attributes["connection"]`` (no alembic.ini at run time)."""

from __future__ import annotations

from alembic import context

from evsys.dashboard.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite alters tables by copying them; batch mode does that
)
with context.begin_transaction():
    context.run_migrations()
