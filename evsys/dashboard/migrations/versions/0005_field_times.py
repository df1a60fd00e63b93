"""Experiments, generations and runs keep when each field's value was written (the client's
clock): a late update from an older writer no longer overwrites a newer value. Rows from before
this revision have no times, and their values count as oldest.

Revision ID: 0005_field_times
Revises: 0004_prediction_score_nonfinite
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005_field_times"
down_revision = "0004_prediction_score_nonfinite"
branch_labels = None
depends_on = None

TABLES = ("experiments", "generations", "runs")


# JSON on SQLite, JSONB on PostgreSQL (as models.JSONType); frozen here, as a migration must be.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("field_times", JSON, nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("field_times")
