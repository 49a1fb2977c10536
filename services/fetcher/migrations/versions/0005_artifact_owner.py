"""fetcher artifacts remember who stored them (issue 13: per-owner cache eviction)

Eviction takes the requesting user's own unpinned entries first, then shared ones. Rows
stored before this revision have no owner and count as shared; an upload's artifact is
owned by its uploader.

Revision ID: fetcher_0005
Revises: fetcher_0004
"""

import sqlalchemy as sa
from alembic import op

revision = "fetcher_0005"
down_revision = "fetcher_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fetcher_artifacts") as batch:
        batch.add_column(sa.Column("owner_id", sa.String(64), nullable=True))
        batch.create_index("ix_fetcher_artifacts_owner_id", ["owner_id"])
    op.execute(
        "UPDATE fetcher_artifacts SET owner_id = ("
        "SELECT u.owner_id FROM fetcher_uploads u "
        "WHERE fetcher_artifacts.source = 'upload://' || u.id) "
        "WHERE source LIKE 'upload://%'"
    )


def downgrade() -> None:
    with op.batch_alter_table("fetcher_artifacts") as batch:
        batch.drop_index("ix_fetcher_artifacts_owner_id")
        batch.drop_column("owner_id")
