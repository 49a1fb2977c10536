"""capacity fallback and node replacement: the choice in use, the replacements made and
the nodes lost

Revision ID: provisioner_0004
Revises: provisioner_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "provisioner_0004"
down_revision = "provisioner_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("provisioner_runs") as batch:
        batch.add_column(sa.Column("choice", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("replacements", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("lost", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("grown", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("provisioner_runs") as batch:
        batch.drop_column("grown")
        batch.drop_column("lost")
        batch.drop_column("replacements")
        batch.drop_column("choice")
