"""pre-flight checks: an LLM task's run waits in 'validating' for the fetcher's check

Revision ID: provisioner_0003
Revises: provisioner_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "provisioner_0003"
down_revision = "provisioner_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provisioner_preflight",
        sa.Column("run_id", sa.Uuid(), primary_key=True),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("provisioner_preflight")
