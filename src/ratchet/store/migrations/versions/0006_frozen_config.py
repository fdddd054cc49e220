"""A study's task file, frozen when the study starts.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    with op.batch_alter_table("ratchet_studies") as batch:
        batch.add_column(sa.Column("config", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("ratchet_studies") as batch:
        batch.drop_column("config")
