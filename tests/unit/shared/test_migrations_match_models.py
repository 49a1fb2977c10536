"""Every service's Alembic chain builds exactly the tables its SQLModel models declare.

For each service the test applies its migrations (the shared outbox/inbox chain, then the
service's own, as :meth:`shared.db.Database.migrate` does at start) to a fresh SQLite
database, and to a fresh PostgreSQL database (types differ there), and compares the result
with the models through Alembic's autogenerate comparison: a table, column, type,
nullability or index that one side has and the other lacks fails the test. Fix the model
or add a migration (``services/<name>/migrations``).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData
from sqlmodel import SQLModel

from shared.db import Database

SERVICES = ("auth", "fetcher", "gateway", "provisioner", "trainer")
#: tables of the shared chain (shared/db/migrations), present in every service's database
SHARED_TABLES = frozenset({"outbox", "inbox"})


def _migrations(service: str) -> Path:
    # importing main imports every model the service runs with
    module = importlib.import_module(f"services.{service}.main")
    location: Path = module.MIGRATIONS
    return location


def _models_of(service: str) -> MetaData:
    ours = MetaData()
    for table in SQLModel.metadata.tables.values():
        if table.name.startswith(f"{service}_") or table.name in SHARED_TABLES:
            table.to_metadata(ours)
    return ours


def _describe(diff: list) -> str:
    return "\n".join(f"  {d!r}" for d in diff)


@pytest.mark.parametrize(
    "dialect", ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
)
@pytest.mark.parametrize("service", SERVICES)
def test_migrations_match_the_models(
    service: str, dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    location = _migrations(service)
    models = _models_of(service)
    assert {t for t in models.tables if t not in SHARED_TABLES}, f"no {service}_ tables found"
    if dialect == "postgresql":
        url = request.getfixturevalue("postgres_url")  # a fresh database
    else:
        url = f"sqlite:///{tmp_path / 'm.db'}"
    db = Database(url)
    try:
        db.migrate(location, service=service)
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), models)
    finally:
        db.dispose()
    # the version tables are Alembic's own, not models
    diff = [d for d in diff if not repr(d).startswith("('remove_table', Table('alembic_version")]
    assert diff == [], (
        f"{service} on {dialect}: the migrations and the models differ (add_* is in the "
        f"models only, remove_* in the migrations only):\n{_describe(diff)}"
    )


def test_every_model_table_belongs_to_a_service() -> None:
    for service in SERVICES:
        _migrations(service)
    owned = [
        name
        for name in SQLModel.metadata.tables
        if name not in SHARED_TABLES and not any(name.startswith(f"{s}_") for s in SERVICES)
    ]
    assert owned == [], f"tables without a service prefix are not checked: {owned}"
