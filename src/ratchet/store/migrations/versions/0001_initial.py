"""Studies and experiments.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "ratchet_studies",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("task", sa.String(200), nullable=False),
        sa.Column("repo_root", sa.Text, nullable=False),
        sa.Column("base_commit", sa.String(64), nullable=False),
        sa.Column("proposer", sa.String(100), nullable=False),
        sa.Column("seed", sa.Integer),
        sa.Column("rule", sa.String(40), nullable=False),
        sa.Column("sigma", sa.Float),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ratchet_experiments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("ratchet_studies.id"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("parent_commit", sa.String(64)),
        sa.Column("commit", sa.String(64)),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("params", sa.JSON),
        sa.Column("diff", sa.Text, nullable=False),
        sa.Column("values", sa.JSON, nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("secondary", sa.JSON, nullable=False),
        sa.Column("holdout", sa.Float),
        sa.Column("delta", sa.Float),
        sa.Column("decision", sa.JSON),
        sa.Column("reason", sa.Text),
        sa.Column("wall_s", sa.Float, nullable=False),
        sa.Column("cpu_s", sa.Float, nullable=False),
        sa.Column("peak_mem_mb", sa.Float, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("trial_number", sa.Integer),
        sa.Column("slot", sa.Integer),
        sa.Column("pgid", sa.Integer),
        sa.Column("log_path", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("study_id", "number", name="uq_experiment_number"),
    )
    op.create_index("ix_experiments_study_status", "ratchet_experiments",
                    ["study_id", "status"])
