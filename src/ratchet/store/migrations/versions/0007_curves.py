"""Intermediate values and early stopping: an experiment's curve, and the compute it saved.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    with op.batch_alter_table("ratchet_experiments") as batch:
        batch.add_column(sa.Column("curve", sa.JSON))
        batch.add_column(sa.Column("saved_s", sa.Float, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("ratchet_experiments") as batch:
        batch.drop_column("saved_s")
        batch.drop_column("curve")
