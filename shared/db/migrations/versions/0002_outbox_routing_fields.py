"""outbox rows keep the fields a broker routes by, so the relay never re-parses bodies

Revision ID: shared_0002
Revises: shared_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "shared_0002"
down_revision = "shared_0001"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("event_version", sa.Integer()),
    ("occurred_at", sa.DateTime(timezone=True)),
    ("correlation_id", sa.Uuid()),
    ("traceparent", sa.String(128)),
)


def upgrade() -> None:
    # Several services may share one database: the first one's migration adds them.
    existing = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("outbox")}
    with op.batch_alter_table("outbox") as batch:
        for name, type_ in _COLUMNS:
            if name not in existing:
                batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
