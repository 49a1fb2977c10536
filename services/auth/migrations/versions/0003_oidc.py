"""auth: single sign-on (OIDC) identities and pending sign-ins

Revision ID: auth_0003
Revises: auth_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "auth_0003"
down_revision = "auth_0002"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "auth_identities",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("user_id", sa.String(36), sa.ForeignKey("auth_users.id"), nullable=False),
        sa.Column("issuer", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        _ts("created_at"),
        _ts("last_login_at"),
        sa.UniqueConstraint("issuer", "subject", name="uq_auth_identities_iss_sub"),
    )
    op.create_index("ix_auth_identities_user_id", "auth_identities", ["user_id"])
    op.create_table(
        "auth_oidc_flows",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("binding_hash", sa.String(64), nullable=False),
        sa.Column("nonce", sa.String(100), nullable=False),
        sa.Column("code_verifier", sa.String(128), nullable=False),
        sa.Column("redirect_uri", sa.String(2000), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("invitation", sa.String(200), nullable=True),
        sa.Column("cli_port", sa.Integer(), nullable=True),
        sa.Column("cli_challenge", sa.String(64), nullable=True),
        sa.Column("cli_state", sa.String(128), nullable=True),
        sa.Column("handoff_hash", sa.String(64), nullable=True),
        sa.Column("user_id", sa.String(36), nullable=True),
        _ts("created_at"),
        _ts("expires_at"),
        _ts("used_at", nullable=True),
        _ts("handoff_used_at", nullable=True),
    )
    op.create_index("ix_auth_oidc_flows_address", "auth_oidc_flows", ["address"])
    op.create_index("ix_auth_oidc_flows_handoff_hash", "auth_oidc_flows", ["handoff_hash"])


def downgrade() -> None:
    op.drop_index("ix_auth_oidc_flows_handoff_hash", table_name="auth_oidc_flows")
    op.drop_index("ix_auth_oidc_flows_address", table_name="auth_oidc_flows")
    op.drop_table("auth_oidc_flows")
    op.drop_index("ix_auth_identities_user_id", table_name="auth_identities")
    op.drop_table("auth_identities")
