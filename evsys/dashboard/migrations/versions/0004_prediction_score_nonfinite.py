"""A prediction keeps a NaN or infinite score by name ("NaN", "Infinity", "-Infinity"), as step
metrics do, instead of null: a judge that answered NaN is a fact, not a missing score.

Revision ID: 0004_prediction_score_nonfinite
Revises: 0003_arm_and_curve_indices
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_prediction_score_nonfinite"
down_revision = "0003_arm_and_curve_indices"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("score_nonfinite", sa.String(length=9), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("score_nonfinite")
