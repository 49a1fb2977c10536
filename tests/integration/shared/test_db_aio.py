"""Async reads (shared/db/aio.py) on an SQLite file and on PostgreSQL: the rows as the ORM
reads them, a bounded pool, read-only connections, a dead connection replaced without a
ping, a pool per event loop."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pydantic_core import to_json

from services.gateway.main import MIGRATIONS
from services.gateway.models import Member, Project
from shared.db import Database

ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.integration)]

_PROJECT = """
SELECT p.id, p.name, p.spec, p.current_run_id, m.role AS role, p.created_at
FROM gateway_projects p JOIN gateway_members m ON m.project_id = p.id AND m.user_id = :user
WHERE p.id = :project
"""
_TYPES = {"id": "uuid", "spec": "json", "current_run_id": "uuid", "created_at": "datetime"}


@pytest.fixture(params=ENGINES)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'aio.db'}"
    database = Database(url, pool_size=3)
    database.migrate(MIGRATIONS, service="gateway")
    yield database
    database.dispose()


def _project(db: Database, **spec: object) -> tuple[uuid.UUID, uuid.UUID]:
    owner = uuid.uuid4()
    with db.session() as session:
        project = Project(name="ünï 'quoted'", spec={"name": "demo", **spec}, owner_id=owner)
        session.add(project)
        session.add(Member(project_id=project.id, user_id=owner, role="owner"))
        session.commit()
        return project.id, owner


async def test_rows_decode_as_the_orm_reads_them(db: Database) -> None:
    project_id, owner = _project(db, nested={"list": [1, 2.5, None, "x"]})
    with db.session() as session:
        orm = session.get(Project, project_id)
        assert orm is not None
    try:
        row = await db.aio.fetch_one(_PROJECT, {"user": owner, "project": project_id}, types=_TYPES)
        assert row == {
            "id": orm.id,
            "name": orm.name,
            "spec": orm.spec,
            "current_run_id": None,
            "role": "owner",
            "created_at": orm.created_at,
        }
        assert isinstance(row["id"], uuid.UUID) and row["spec"]["nested"]["list"][1] == 2.5
        # serialised as the ORM's value is: aware, in UTC
        assert to_json(row["created_at"]) == to_json(orm.created_at)
        assert to_json(row["created_at"]).endswith(b'Z"')
        # the parameters bind as the ORM stores them: another user's id matches nothing
        other = {"user": uuid.uuid4(), "project": project_id}
        assert await db.aio.fetch(_PROJECT, other, types=_TYPES) == []
        assert await db.aio.fetch_one(_PROJECT, other) is None
    finally:
        await db.aio.close()


async def test_pool_is_bounded_and_connections_are_reused(db: Database) -> None:
    project_id, owner = _project(db)
    params = {"user": owner, "project": project_id}
    try:
        results = await asyncio.gather(
            *(db.aio.fetch(_PROJECT, params, types=_TYPES) for _ in range(40))
        )
        assert all(len(rows) == 1 and rows[0]["id"] == project_id for rows in results)
        pool = db.aio._pool
        assert pool is not None and 1 <= len(pool._open) <= 3  # pool_size=3
        opened = list(pool._open)
        await asyncio.gather(*(db.aio.fetch(_PROJECT, params) for _ in range(10)))
        assert all(any(c is o for o in pool._open) for c in opened)  # reused, not reopened
    finally:
        await db.aio.close()


async def test_connections_only_read(db: Database) -> None:
    project_id, _owner = _project(db)
    try:
        with pytest.raises((psycopg.Error, Exception)) as raised:
            await db.aio.fetch(
                "UPDATE gateway_projects SET name = :name WHERE id = :id",
                {"name": "changed", "id": project_id},
            )
        assert "read" in str(raised.value).lower()  # read-only transaction / readonly database
        with db.session() as session:
            project = session.get(Project, project_id)
            assert project is not None and project.name != "changed"
        # the pool still answers after the refused statement
        assert len(await db.aio.fetch("SELECT id FROM gateway_projects")) == 1
    finally:
        await db.aio.close()


def test_each_event_loop_gets_its_own_connections(db: Database) -> None:
    project_id, owner = _project(db)
    params = {"user": owner, "project": project_id}

    async def read() -> object:
        rows = await db.aio.fetch(_PROJECT, params, types=_TYPES)
        return rows[0]["id"], db.aio._pool

    first_id, first_pool = asyncio.run(read())  # the loop ends without close()
    second_id, second_pool = asyncio.run(read())
    assert first_id == second_id == project_id
    assert first_pool is not second_pool
    assert first_pool._open == []  # type: ignore[attr-defined]  # dropped, not leaked


async def test_in_memory_sqlite_reads_through_the_engine() -> None:
    db = Database("sqlite://")
    db.migrate(MIGRATIONS, service="gateway")
    try:
        project_id, owner = _project(db)
        row = await db.aio.fetch_one(_PROJECT, {"user": owner, "project": project_id}, types=_TYPES)
        assert db.aio.kind == "sync" and row is not None and row["id"] == project_id
    finally:
        db.dispose()


@pytest.mark.integration
async def test_a_dead_postgres_connection_is_replaced_without_a_ping(postgres_url: str) -> None:
    db = Database(postgres_url, pool_size=1)
    db.migrate(MIGRATIONS, service="gateway")
    try:
        project_id, owner = _project(db)
        params = {"user": owner, "project": project_id}
        pid = (await db.aio.fetch("SELECT pg_backend_pid() AS pid"))[0]["pid"]
        dsn = postgres_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as admin:
            # autocommit: the pooled connection sits idle, not idle in a transaction
            state = admin.execute(
                "SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone()
            assert state == ("idle",)
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        await asyncio.sleep(0.2)
        rows = await db.aio.fetch(_PROJECT, params, types=_TYPES)  # retried on a new one
        assert [r["id"] for r in rows] == [project_id]
        new_pid = (await db.aio.fetch("SELECT pg_backend_pid() AS pid"))[0]["pid"]
        assert new_pid != pid
    finally:
        await db.aio.close()
        db.dispose()
