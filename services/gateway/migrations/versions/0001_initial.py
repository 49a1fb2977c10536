"""gateway tables: projects, members, runs, event log

Revision ID: gateway_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "gateway_0001"
down_revision = None
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "gateway_projects",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("current_run_id", sa.Uuid(), nullable=True),
        sa.Column("run_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_seq", _BIGINT, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "gateway_members",
        sa.Column("project_id", sa.Uuid(), primary_key=True),
        sa.Column("user_id", sa.Uuid(), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False, server_default=""),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_gateway_members_user_id", "gateway_members", ["user_id"])
    op.create_table(
        "gateway_runs",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("requested_by", sa.Uuid(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("progress", sa.JSON(), nullable=True),
        sa.Column("model_version", sa.String(200), nullable=True),
        sa.Column("deployment_id", sa.Uuid(), nullable=True),
        sa.Column("endpoint", sa.String(500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("preparing_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("training_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deploying_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("project_id", "number", name="uq_gateway_runs_number"),
    )
    op.create_index("ix_gateway_runs_project_id", "gateway_runs", ["project_id"])
    op.create_table(
        "gateway_events",
        sa.Column("project_id", sa.Uuid(), primary_key=True),
        sa.Column("seq", _BIGINT, primary_key=True, autoincrement=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("event_id", name="uq_gateway_events_event_id"),
    )
    op.create_index("ix_gateway_events_run_id", "gateway_events", ["run_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_gateway_events_run_id", table_name="gateway_events")
    op.drop_table("gateway_events")
    op.drop_index("ix_gateway_runs_project_id", table_name="gateway_runs")
    op.drop_table("gateway_runs")
    op.drop_index("ix_gateway_members_user_id", table_name="gateway_members")
    op.drop_table("gateway_members")
    op.drop_table("gateway_projects")
