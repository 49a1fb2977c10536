"""trainer: the user a run belongs to (whose secrets its training process gets)

Revision ID: trainer_0003
Revises: trainer_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "trainer_0003"
down_revision = "trainer_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trainer_runs") as batch:
        batch.add_column(sa.Column("owner_id", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trainer_runs") as batch:
        batch.drop_column("owner_id")
