"""Re-runs of a study's best solution at longer horizons (`ratchet generalize`).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "ratchet_generalization",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("ratchet_studies.id"), nullable=False),
        sa.Column("experiment_number", sa.Integer, nullable=False),
        sa.Column("horizon", sa.Float, nullable=False),
        sa.Column("run", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("reason", sa.Text),
        sa.Column("wall_s", sa.Float, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("study_id", "experiment_number", "horizon", "run",
                            name="uq_generalization_run"),
    )
