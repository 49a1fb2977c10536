"""fetcher tables

Revision ID: fetcher_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "fetcher_0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "fetcher_jobs",
        sa.Column("run_id", sa.Uuid(), primary_key=True),
        sa.Column("project_id", sa.Uuid(), nullable=True, index=True),
        sa.Column("owner_id", sa.String(64), nullable=True),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "fetcher_artifacts",
        sa.Column("key", sa.String(600), primary_key=True),
        sa.Column("source", sa.String(512), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("resolved_revision", sa.String(128), nullable=False),
        sa.Column("cache_key", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("last_used_at", _TS, nullable=False, index=True),
    )
    op.create_table(
        "fetcher_artifact_files",
        sa.Column("artifact_key", sa.String(600), primary_key=True),
        sa.Column("path", sa.String(1024), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False, index=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "fetcher_aliases",
        sa.Column("alias", sa.String(128), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
    )
    op.create_table(
        "fetcher_pins",
        sa.Column("run_id", sa.Uuid(), primary_key=True),
        sa.Column("artifact_key", sa.String(600), primary_key=True),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "fetcher_leases",
        sa.Column("key", sa.String(600), primary_key=True),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
    )
    op.create_table(
        "fetcher_uploads",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("owner_id", sa.String(64), nullable=False, index=True),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "fetcher_uploads",
        "fetcher_leases",
        "fetcher_pins",
        "fetcher_aliases",
        "fetcher_artifact_files",
        "fetcher_artifacts",
        "fetcher_jobs",
    ):
        op.drop_table(table)
