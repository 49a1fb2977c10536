"""``GET /api/projects``'s body (services/gateway/reads.py): PostgreSQL and SQLite write
the JSON themselves; it must say exactly what the row path and the declared
``ProjectOut`` model say — same fields, same values, timestamps written as pydantic writes
them (with and without microseconds) — for a member's listing and an admin's."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.gateway.identity import Identity
from services.gateway.main import MIGRATIONS
from services.gateway.models import Member, Project, Run
from services.gateway.reads import _encode, projects_answer, projects_of
from services.gateway.schemas import ProjectOut
from shared.db import Database

ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.integration)]


@pytest.fixture(params=ENGINES)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'answer.db'}"
    database = Database(url, pool_size=3)
    database.migrate(MIGRATIONS, service="gateway")
    yield database
    database.dispose()


def _seed(db: Database) -> tuple[uuid.UUID, uuid.UUID]:
    """Three projects of one member (one with a run, one created on a whole second) and one
    of a stranger; returns (member, stranger)."""
    member, stranger = uuid.uuid4(), uuid.uuid4()
    whole_second = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
    with db.session() as session:
        specs: list[dict[str, Any]] = [
            {"name": "ünï 'quoted' \"x\"", "nested": {"list": [1, 2.5, None, "x", True]}},
            {"name": "plain", "model": {"source": "hf://a/b"}},
            {"name": "emoji 🚀", "train": {"args": {"epochs": 1}}},
        ]
        for index, spec in enumerate(specs):
            project = Project(name=f"p{index}-{spec['name']}", spec=spec, owner_id=member)
            if index == 1:
                project.created_at = project.updated_at = whole_second
            session.add(project)
            session.add(Member(project_id=project.id, user_id=member, role="editor"))
            if index == 0:
                run = Run(project_id=project.id, number=1, spec=spec, status="training")
                session.add(run)
                project.current_run_id = run.id
        session.add(Project(name="theirs", spec={"name": "theirs"}, owner_id=stranger))
        session.commit()
    return member, stranger


def _contract(body: bytes) -> list[dict[str, Any]]:
    """The body as the declared ProjectOut list would write it."""
    items = json.loads(body)
    return [json.loads(ProjectOut.model_validate(item).model_dump_json()) for item in items]


@pytest.mark.parametrize("admin", [False, True])
async def test_the_body_says_what_the_rows_and_the_model_say(db: Database, admin: bool) -> None:
    member, _stranger = _seed(db)
    caller = Identity(user_id=member, email="m@example.com", is_admin=admin)
    try:
        body = await projects_answer(db.aio, user=caller, everything=admin)
        rows = _encode(await projects_of(db.aio, user=caller, everything=admin))
    finally:
        await db.aio.close()
    answer = json.loads(body)
    assert answer == json.loads(rows)
    assert answer == _contract(body)
    assert len(answer) == (4 if admin else 3)
    names = [item["name"] for item in answer]
    assert ("theirs" in names) is admin
    roles = {item["name"]: item["role"] for item in answer}
    assert roles.get("theirs", "viewer") == "viewer"
    assert {roles[n] for n in names if n != "theirs"} == {"editor"}
    by_name = {item["name"]: item for item in answer}
    whole = next(item for name, item in by_name.items() if name.startswith("p1-"))
    assert whole["created_at"] == "2026-11-30T12:00:00Z"
    first = next(item for name, item in by_name.items() if name.startswith("p0-"))
    assert first["status"] == "training" and first["spec"]["nested"]["list"][4] is True
    assert [item["created_at"] for item in answer] == sorted(
        (item["created_at"] for item in answer), reverse=True
    )


async def test_nobody_sees_an_empty_list_as_anything_but_one(db: Database) -> None:
    _seed(db)
    caller = Identity(user_id=uuid.uuid4(), email="n@example.com")
    try:
        assert json.loads(await projects_answer(db.aio, user=caller, everything=False)) == []
    finally:
        await db.aio.close()
