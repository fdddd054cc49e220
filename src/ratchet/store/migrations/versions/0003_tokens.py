"""What an experiment's proposal cost in tokens, and the agent's stated rationale.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    with op.batch_alter_table("ratchet_experiments") as batch:
        batch.add_column(sa.Column("llm_usd", sa.Float, nullable=False, server_default="0"))
        for name in ("tokens_in", "tokens_out", "tokens_cached"):
            batch.add_column(sa.Column(name, sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("rationale", sa.JSON))
