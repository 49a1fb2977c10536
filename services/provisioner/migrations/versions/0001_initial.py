"""provisioner tables: run nodes (job state machine) and environment locks

Revision ID: provisioner_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "provisioner_0001"
down_revision = None
branch_labels = None
depends_on = None


def _ts(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "provisioner_runs",
        sa.Column("run_id", sa.Uuid(), primary_key=True),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("nodes", sa.JSON(), nullable=True),
        sa.Column("env", sa.JSON(), nullable=True),
        sa.Column("lock_hash", sa.String(64), nullable=True),
        sa.Column("lock", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("failed_step", sa.String(64), nullable=True),
        sa.Column("training", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("serving", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("release_reason", sa.String(64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("last_active_at"),
    )
    op.create_index("ix_provisioner_runs_project_id", "provisioner_runs", ["project_id"])
    op.create_index("ix_provisioner_runs_state", "provisioner_runs", ["state"])
    op.create_table(
        "provisioner_locks",
        sa.Column("input_key", sa.String(64), primary_key=True),
        sa.Column("lock_hash", sa.String(64), nullable=False),
        sa.Column("lock", sa.Text(), nullable=False),
        _ts("created_at"),
    )


def downgrade() -> None:
    op.drop_table("provisioner_locks")
    op.drop_index("ix_provisioner_runs_state", table_name="provisioner_runs")
    op.drop_index("ix_provisioner_runs_project_id", table_name="provisioner_runs")
    op.drop_table("provisioner_runs")
