"""Step metrics keep when each value was written and whether it was NaN or infinite: a value
replaces another only when it was written later (rows from before this revision have no time
and count as oldest), and NaN, +Inf and -Inf stay apart instead of all becoming null.

Revision ID: 0002_step_written_at
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_step_written_at"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("step_metrics") as batch:
        batch.add_column(sa.Column("written_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("nonfinite", sa.String(length=9), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("step_metrics") as batch:
        batch.drop_column("nonfinite")
        batch.drop_column("written_at")
