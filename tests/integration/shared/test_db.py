"""Database engines and migrations (shared/db) on SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from shared.db import Database

SERVICES = ["auth", "gateway", "provisioner", "fetcher", "trainer"]


@pytest.mark.integration
def test_services_sharing_one_postgres_database_can_migrate_at_once(postgres_url: str) -> None:
    databases = [Database(postgres_url) for _ in SERVICES]
    try:
        with ThreadPoolExecutor(len(SERVICES)) as pool:
            futures = [
                pool.submit(db.migrate, service=name)
                for db, name in zip(databases, SERVICES, strict=True)
            ]
            for future in futures:
                future.result()  # raises if two migrations raced on the shared tables
        tables = set(inspect(databases[0].engine).get_table_names())
        assert {"outbox", "inbox"} <= tables
        assert {f"alembic_version_{name}_shared" for name in SERVICES} <= tables
    finally:
        for db in databases:
            db.dispose()


@pytest.mark.parametrize(
    "engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.integration)]
)
def test_migrating_again_is_a_no_op_and_sessions_roll_back_on_error(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        request.getfixturevalue("postgres_url")
        if engine == "postgres"
        else f"sqlite:///{tmp_path / 'db.sqlite'}"
    )
    db = Database(url)
    try:
        assert db.is_postgres is (engine == "postgres")
        db.migrate(service="svc")
        db.migrate(service="svc")
        with db.session() as session:
            version = session.execute(text("SELECT version_num FROM alembic_version_svc_shared"))
            assert version.scalar_one() == "shared_0002"
        with pytest.raises(RuntimeError), db.session() as session:
            session.execute(
                text(
                    "INSERT INTO inbox (service, event_id, event_type, handled_at) "
                    "VALUES ('svc', :id, 'X', CURRENT_TIMESTAMP)"
                ),
                {"id": "0b5f7c1e8d1a4f629a553c0e2f4d9a11"},
            )
            raise RuntimeError("the block failed")
        with db.session() as session:
            assert session.execute(text("SELECT count(*) FROM inbox")).scalar_one() == 0
    finally:
        db.dispose()
