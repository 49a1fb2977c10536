"""Run an Alembic migration chain programmatically (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

__all__ = ["alembic_config", "upgrade"]


def alembic_config(script_location: Path, *, version_table: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["version_table"] = version_table
    return config


def upgrade(engine: Engine, script_location: Path, *, version_table: str) -> None:
    """Upgrade ``engine``'s database along the chain at ``script_location`` to head."""
    config = alembic_config(script_location, version_table=version_table)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
