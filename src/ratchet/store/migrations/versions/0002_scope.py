"""An experiment's scope: IN or OUTSIDE the classical search space.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("ratchet_experiments") as batch:
        batch.add_column(sa.Column("scope", sa.String(10)))
