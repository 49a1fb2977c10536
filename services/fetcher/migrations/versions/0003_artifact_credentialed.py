"""fetcher artifacts remember whether they were fetched with credentials (issue 12 item 3)

A credentialed entry is served from the cache only after the requester's own credentials
were checked against the provider. Existing HuggingFace and Kaggle entries were fetched
with unknown credentials, so they are marked credentialed (one check on their next hit;
an HF entry that anonymous access can read is then marked public again).

Revision ID: fetcher_0003
Revises: fetcher_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "fetcher_0003"
down_revision = "fetcher_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fetcher_artifacts") as batch:
        batch.add_column(
            sa.Column("credentialed", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.execute(
        "UPDATE fetcher_artifacts SET credentialed = TRUE "
        "WHERE source LIKE 'hf://%' OR source LIKE 'kaggle://%'"
    )


def downgrade() -> None:
    with op.batch_alter_table("fetcher_artifacts") as batch:
        batch.drop_column("credentialed")
