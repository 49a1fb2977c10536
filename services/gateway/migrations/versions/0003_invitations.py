"""gateway: pending member invitations (issue 13: member-add needs the invitee's consent)

Revision ID: gateway_0003
Revises: gateway_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "gateway_0003"
down_revision = "gateway_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_invitations",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("invited_by", sa.Uuid(), nullable=False),
        sa.Column("invited_by_email", sa.String(320), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("project_id", "email", name="uq_gateway_invitations"),
    )
    op.create_index("ix_gateway_invitations_project_id", "gateway_invitations", ["project_id"])
    op.create_index("ix_gateway_invitations_email", "gateway_invitations", ["email"])
    op.create_index("ix_gateway_invitations_user_id", "gateway_invitations", ["user_id"])


def downgrade() -> None:
    op.drop_table("gateway_invitations")
