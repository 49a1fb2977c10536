"""run leases: which provisioner replica works on a run, until when

Revision ID: provisioner_0005
Revises: provisioner_0004
"""

import sqlalchemy as sa
from alembic import op

revision = "provisioner_0005"
down_revision = "provisioner_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("provisioner_runs") as batch:
        batch.add_column(sa.Column("lease_holder", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("provisioner_runs") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("lease_holder")
