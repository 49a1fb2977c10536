"""fetcher remembers the last resolution of each floating ref (issue 19: hub outages)

While the provider is unreachable, a fetch of ``@main`` that was resolved before uses the
last resolution (if its files are cached) with a warning event, unless the spec sets
``strict_revisions: true``.

Revision ID: fetcher_0006
Revises: fetcher_0005
"""

import sqlalchemy as sa
from alembic import op

revision = "fetcher_0006"
down_revision = "fetcher_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fetcher_resolutions",
        sa.Column("key", sa.String(600), primary_key=True),
        sa.Column("revision", sa.String(128), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("fetcher_resolutions")
