"""Many drivers on one study: a drivers table, claims on experiments, a best pointer.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "ratchet_drivers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("ratchet_studies.id"), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("executor", sa.String(40), nullable=False),
        sa.Column("slots", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True)),
        sa.Column("stop_reason", sa.Text),
    )
    with op.batch_alter_table("ratchet_studies") as batch:
        batch.add_column(sa.Column("best_id", sa.Integer))
        batch.add_column(sa.Column("best_version", sa.Integer, nullable=False,
                                   server_default="0"))
    with op.batch_alter_table("ratchet_experiments") as batch:
        batch.add_column(sa.Column("driver_id", sa.Integer))
        batch.add_column(sa.Column("remeasure", sa.Boolean, nullable=False,
                                   server_default=sa.false()))
    # The best of an existing study is its last kept experiment.
    op.execute(
        "UPDATE ratchet_studies SET best_id = (SELECT e.id FROM ratchet_experiments e "
        "WHERE e.study_id = ratchet_studies.id AND e.status = 'keep' "
        "ORDER BY e.number DESC LIMIT 1)")
