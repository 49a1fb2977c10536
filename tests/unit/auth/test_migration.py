"""The Alembic revision creates exactly the tables declared in services/auth/models.py."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData

from services.auth import models
from services.auth.main import MIGRATIONS
from shared.db import Database


def test_migration_matches_the_models(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    db.migrate(MIGRATIONS, service="auth")
    ours = MetaData()
    for table in models.SQLModel.metadata.tables.values():
        if table.name.startswith("auth_"):
            table.to_metadata(ours)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), ours)
    db.dispose()
    relevant = [d for d in diff if "alembic_version" not in repr(d) and "auth_" in repr(d)]
    assert relevant == []
