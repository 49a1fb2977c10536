"""outbox and inbox tables

Revision ID: shared_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "shared_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    # Several services may share one database: the first one's migration creates these.
    if not inspector.has_table("outbox"):
        op.create_table(
            "outbox",
            sa.Column(
                "seq",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                primary_key=True,
                autoincrement=True,
            ),
            sa.Column("event_id", sa.Uuid(), nullable=False, unique=True),
            sa.Column("service", sa.String(64), nullable=False),
            sa.Column("event_type", sa.String(128), nullable=False),
            sa.Column("body", sa.LargeBinary(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        )
        op.create_index("ix_outbox_pending", "outbox", ["service", "sent_at", "seq"])
    if not inspector.has_table("inbox"):
        op.create_table(
            "inbox",
            sa.Column("service", sa.String(64), primary_key=True),
            sa.Column("event_id", sa.Uuid(), primary_key=True),
            sa.Column("event_type", sa.String(128), nullable=False),
            sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
        )


def downgrade() -> None:
    op.drop_table("inbox")
    op.drop_index("ix_outbox_pending", table_name="outbox")
    op.drop_table("outbox")
