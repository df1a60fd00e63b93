"""Indices for reading a large sweep: an experiment's arms in creation order, and one metric's
curves of many runs at once (the overlaid charts) without reading their other metrics.

Revision ID: 0003_arm_and_curve_indices
Revises: 0002_step_written_at
"""

from __future__ import annotations

from alembic import op

revision = "0003_arm_and_curve_indices"
down_revision = "0002_step_written_at"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_runs_project_id_experiment_id_created_at",
        "runs",
        ["project_id", "experiment_id", "created_at"],
    )
    op.create_index(
        "ix_step_metrics_curves",
        "step_metrics",
        ["project_id", "run_id", "name", "step", "value", "written_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_step_metrics_curves", table_name="step_metrics")
    op.drop_index("ix_runs_project_id_experiment_id_created_at", table_name="runs")
