"""Seeds: the RATCHET_SEED each of an experiment's runs got, parallel to its values.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    with op.batch_alter_table("ratchet_experiments") as batch:
        batch.add_column(sa.Column("seeds", sa.JSON, nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("ratchet_experiments") as batch:
        batch.drop_column("seeds")
