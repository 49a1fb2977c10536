"""auth: session revocation time, disabled accounts, refresh family start, API token
scopes, invitations, known devices

Revision ID: auth_0002
Revises: auth_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "auth_0002"
down_revision = "auth_0001"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("auth_users") as batch:
        batch.add_column(_ts("sessions_not_before", nullable=True))
        batch.add_column(_ts("disabled_at", nullable=True))
    with op.batch_alter_table("auth_refresh_tokens") as batch:
        batch.add_column(_ts("family_started_at", nullable=True))
    with op.batch_alter_table("auth_api_tokens") as batch:
        # Tokens made before scopes existed keep what they could do, except admin.
        batch.add_column(
            sa.Column(
                "scopes",
                sa.String(100),
                nullable=False,
                server_default="read run deploy predict",
            )
        )
    op.create_table(
        "auth_invitations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("created_by", sa.String(36), nullable=False),
        _ts("created_at"),
        _ts("expires_at"),
        _ts("used_at", nullable=True),
        sa.Column("used_by", sa.String(36), nullable=True),
    )
    op.create_table(
        "auth_devices",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(36), sa.ForeignKey("auth_users.id"), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        _ts("created_at"),
        _ts("last_used_at"),
    )
    op.create_index("ix_auth_devices_user_id", "auth_devices", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_auth_devices_user_id", table_name="auth_devices")
    op.drop_table("auth_devices")
    op.drop_table("auth_invitations")
    with op.batch_alter_table("auth_api_tokens") as batch:
        batch.drop_column("scopes")
    with op.batch_alter_table("auth_refresh_tokens") as batch:
        batch.drop_column("family_started_at")
    with op.batch_alter_table("auth_users") as batch:
        batch.drop_column("disabled_at")
        batch.drop_column("sessions_not_before")
