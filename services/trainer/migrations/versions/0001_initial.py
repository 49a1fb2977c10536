"""trainer tables: runs, checkpoints, models, deployments

Revision ID: trainer_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "trainer_0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "trainer_runs",
        sa.Column("run_id", sa.Uuid(), primary_key=True),
        sa.Column("project_id", sa.Uuid(), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=True),
        sa.Column("spec_hash", sa.String(64), nullable=True),
        sa.Column("nodes", sa.JSON(), nullable=True),
        sa.Column("env", sa.JSON(), nullable=True),
        sa.Column("artifacts", sa.JSON(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_step", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("reason", sa.String(2000), nullable=True),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("lease_until", TS, nullable=True),
        sa.Column("processes", sa.JSON(), nullable=True),
        sa.Column("nodes_released", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("workspace_cleaned", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("model_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_trainer_runs_state", "trainer_runs", ["state"])
    op.create_table(
        "trainer_checkpoints",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("manifest_key", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("run_id", "step", name="uq_trainer_checkpoints_run_step"),
    )
    op.create_index("ix_trainer_checkpoints_run_id", "trainer_checkpoints", ["run_id"])
    op.create_table(
        "trainer_models",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(64), nullable=False),
        sa.Column("manifest_key", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("lineage", sa.JSON(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("project_id", "version", name="uq_trainer_models_version"),
    )
    op.create_index("ix_trainer_models_project_id", "trainer_models", ["project_id"])
    op.create_table(
        "trainer_deployments",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("node", sa.JSON(), nullable=True),
        sa.Column("workdir", sa.String(1000), nullable=True),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("restarts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("reason", sa.String(2000), nullable=True),
        sa.Column("endpoint", sa.String(300), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_trainer_deployments_project_id", "trainer_deployments", ["project_id"])
    op.create_index("ix_trainer_deployments_status", "trainer_deployments", ["status"])


def downgrade() -> None:
    for table in ("trainer_deployments", "trainer_models", "trainer_checkpoints", "trainer_runs"):
        op.drop_table(table)
