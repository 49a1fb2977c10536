"""Run an Alembic migration chain programmatically (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

__all__ = ["MIGRATION_LOCK", "alembic_config", "upgrade"]

#: PostgreSQL advisory lock key serialising migrations of services sharing one database.
MIGRATION_LOCK = 0x41494450  # "AIDP"


def alembic_config(script_location: Path, *, version_table: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["version_table"] = version_table
    return config


def upgrade(engine: Engine, script_location: Path, *, version_table: str) -> None:
    """Upgrade ``engine``'s database along the chain at ``script_location`` to head.

    On PostgreSQL the upgrade holds a transaction-scoped advisory lock, so services that
    start at once against one database migrate one after the other (the shared outbox
    and inbox tables are created once, never raced).
    """
    config = alembic_config(script_location, version_table=version_table)
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
