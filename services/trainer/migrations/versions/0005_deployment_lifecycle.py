"""trainer: deployments as first-class objects (issue 16): replicas, scale to zero, the
project's live alias and what happens when a deployment becomes running

Revision ID: trainer_0005
Revises: trainer_0004
"""

import sqlalchemy as sa
from alembic import op

revision = "trainer_0005"
down_revision = "trainer_0004"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("replicas", sa.Integer(), "1"),
    ("procs", sa.JSON(), None),
    ("idle_timeout_s", sa.Integer(), None),
    ("last_request_at", sa.DateTime(timezone=True), None),
    ("promote_on_ready", sa.Boolean(), sa.false()),
    ("keep_previous", sa.Boolean(), sa.false()),
    ("rollback", sa.Boolean(), sa.false()),
)


def upgrade() -> None:
    with op.batch_alter_table("trainer_deployments") as batch:
        for name, type_, default in _COLUMNS:
            batch.add_column(
                sa.Column(
                    name,
                    type_,
                    nullable=default is None,
                    server_default=default,
                )
            )
    op.create_table(
        "trainer_project_endpoints",
        sa.Column("project_id", sa.Uuid(), primary_key=True),
        sa.Column("deployment_id", sa.Uuid(), nullable=True),
        sa.Column("history", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("trainer_project_endpoints")
    with op.batch_alter_table("trainer_deployments") as batch:
        for name, _, _ in reversed(_COLUMNS):
            batch.drop_column(name)
