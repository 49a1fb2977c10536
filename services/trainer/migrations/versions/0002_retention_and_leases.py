"""trainer: blobs the trainer created (checkpoint pruning); deployment watch leases

Revision ID: trainer_0002
Revises: trainer_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "trainer_0002"
down_revision = "trainer_0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "trainer_blobs",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("created_at", TS, nullable=False),
    )
    with op.batch_alter_table("trainer_deployments") as batch:
        batch.add_column(sa.Column("owner", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lease_until", TS, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trainer_deployments") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("owner")
    op.drop_table("trainer_blobs")
