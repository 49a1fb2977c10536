"""fetcher job claims: one replica at a time runs (and reports) a fetch job

Revision ID: fetcher_0002
Revises: fetcher_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "fetcher_0002"
down_revision = "fetcher_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fetcher_jobs") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("claim_expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fetcher_jobs") as batch:
        batch.drop_column("claim_expires_at")
        batch.drop_column("claimed_by")
