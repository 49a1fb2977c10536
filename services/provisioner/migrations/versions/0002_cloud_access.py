"""platform cloud credentials: admin allow-list and its audit trail; per-run billing

Revision ID: provisioner_0002
Revises: provisioner_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "provisioner_0002"
down_revision = "provisioner_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("provisioner_runs", sa.Column("credential_source", sa.String(16), nullable=True))
    op.add_column("provisioner_runs", sa.Column("hourly_usd", sa.Float(), nullable=True))
    op.create_table(
        "provisioner_cloud_access",
        sa.Column("user_id", sa.Uuid(), primary_key=True),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("granted_by", sa.Uuid(), nullable=True),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "provisioner_cloud_access_changes",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
    )
    op.create_index(
        "ix_provisioner_cloud_access_changes_at", "provisioner_cloud_access_changes", ["at"]
    )


def downgrade() -> None:
    op.drop_table("provisioner_cloud_access_changes")
    op.drop_table("provisioner_cloud_access")
    op.drop_column("provisioner_runs", "hourly_usd")
    op.drop_column("provisioner_runs", "credential_source")
