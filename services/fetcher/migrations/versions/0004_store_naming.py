"""fetcher: marker of the one-time move of its blob references to keyed names (issue 12)

The store's blobs are now named by ``HMAC-SHA256(naming key, sha256(plaintext))``; the
references this database holds are mapped at the next start (``services.fetcher.naming``),
once, in the transaction that inserts this table's row.

Revision ID: fetcher_0004
Revises: fetcher_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "fetcher_0004"
down_revision = "fetcher_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fetcher_store_naming",
        sa.Column("step", sa.String(64), primary_key=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("fetcher_store_naming")
