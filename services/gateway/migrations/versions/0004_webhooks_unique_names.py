"""gateway: project webhooks and their delivery log; project names unique per owner (issue 16)

Existing duplicate names of one owner are renamed first, the oldest project keeping its
name and the others getting ``-2``, ``-3``… (the first suffix not taken).

Revision ID: gateway_0004
Revises: gateway_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "gateway_0004"
down_revision = "gateway_0003"
branch_labels = None
depends_on = None


def _dedupe_names() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.text("SELECT id, owner_id, name FROM gateway_projects ORDER BY created_at, id")
    ).all()
    taken: dict[object, set[str]] = {}
    for _id, owner, name in rows:
        taken.setdefault(owner, set()).add(name)
    seen: dict[object, set[str]] = {}
    for project_id, owner, name in rows:
        mine = seen.setdefault(owner, set())
        if name not in mine:
            mine.add(name)
            continue
        n = 2
        while f"{name[:190]}-{n}" in taken[owner]:
            n += 1
        fresh = f"{name[:190]}-{n}"
        taken[owner].add(fresh)
        mine.add(fresh)
        conn.execute(
            sa.text("UPDATE gateway_projects SET name = :name WHERE id = :id"),
            {"name": fresh, "id": project_id},
        )


def upgrade() -> None:
    _dedupe_names()
    op.create_index(
        "uq_gateway_projects_owner_name", "gateway_projects", ["owner_id", "name"], unique=True
    )
    op.create_table(
        "gateway_webhooks",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("secret_sealed", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_gateway_webhooks_project_id", "gateway_webhooks", ["project_id"])
    op.create_table(
        "gateway_webhook_deliveries",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("webhook_id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("webhook_id", "event_id", "kind", name="uq_gateway_webhook_delivery"),
    )
    op.create_index(
        "ix_gateway_webhook_deliveries_due",
        "gateway_webhook_deliveries",
        ["status", "next_attempt_at"],
    )
    op.create_index(
        "ix_gateway_webhook_deliveries_webhook",
        "gateway_webhook_deliveries",
        ["webhook_id", "created_at"],
    )


def downgrade() -> None:
    op.drop_table("gateway_webhook_deliveries")
    op.drop_table("gateway_webhooks")
    op.drop_index("uq_gateway_projects_owner_name", table_name="gateway_projects")
