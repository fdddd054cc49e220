"""Multi-fidelity: an experiment's runs at short horizons.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    with op.batch_alter_table("ratchet_experiments") as batch:
        batch.add_column(sa.Column("screens", sa.JSON, nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("ratchet_experiments") as batch:
        batch.drop_column("screens")
