"""gateway: who last changed a project's spec, per-member spec approvals, audit trail

Revision ID: gateway_0002
Revises: gateway_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "gateway_0002"
down_revision = "gateway_0001"
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("gateway_projects") as batch:
        batch.add_column(sa.Column("spec_changed_by", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("spec_changed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "gateway_spec_approvals",
        sa.Column("project_id", sa.Uuid(), primary_key=True),
        sa.Column("user_id", sa.Uuid(), primary_key=True),
        sa.Column("spec_hash", sa.String(64), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "gateway_audit",
        sa.Column("id", _BIGINT, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("actor_email", sa.String(320), nullable=False, server_default=""),
        sa.Column("spec_hash", sa.String(64), nullable=True),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("run_number", sa.Integer(), nullable=True),
        sa.Column("subject_id", sa.Uuid(), nullable=True),
        sa.Column("subject_email", sa.String(320), nullable=True),
        sa.Column("role", sa.String(16), nullable=True),
    )
    op.create_index("ix_gateway_audit_project_id", "gateway_audit", ["project_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_gateway_audit_project_id", table_name="gateway_audit")
    op.drop_table("gateway_audit")
    op.drop_table("gateway_spec_approvals")
    with op.batch_alter_table("gateway_projects") as batch:
        batch.drop_column("spec_changed_at")
        batch.drop_column("spec_changed_by")
