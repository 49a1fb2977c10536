"""trainer: marker of the one-time move of its blob references to keyed names (issue 12)

The store's blobs are now named by ``HMAC-SHA256(naming key, sha256(plaintext))``; the
references this database holds are mapped at the next start (``services.trainer.naming``),
once, in the transaction that inserts this table's row.

Revision ID: trainer_0004
Revises: trainer_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "trainer_0004"
down_revision = "trainer_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trainer_store_naming",
        sa.Column("step", sa.String(64), primary_key=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("trainer_store_naming")
