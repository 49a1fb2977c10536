"""The async read path (services/gateway/reads.py): projects and runs read straight from
rows answer exactly what ProjectOut / RunOut built from the ORM objects answer, and the
access check in the same query keeps every other tenant out (404), admins read as
viewers, tokens without ``read`` get 403."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.gateway import projects as service
from services.gateway.main import create_app
from services.gateway.models import Project, Run
from services.gateway.routes.projects import project_out
from services.gateway.routes.runs import run_out
from shared.bus.memory import MemoryBus
from shared.secrets import InMemoryVault
from tests.unit.gateway.authstub import AuthStub
from tests.unit.gateway.conftest import Harness, gateway_settings


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
async def any_db(
    request: pytest.FixtureRequest, tmp_path: Path, auth: AuthStub
) -> AsyncIterator[Harness]:
    """The unit harness on an SQLite file, and on PostgreSQL."""
    overrides: dict[str, Any] = {"user_max_active_runs": 0}
    if request.param == "postgres":
        overrides["database_url"] = request.getfixturevalue("postgres_url")
    vault = InMemoryVault()
    settings = gateway_settings(tmp_path, auth.url, **overrides)  # type: ignore[attr-defined]
    app = create_app(settings, vault=(vault, vault))
    publisher = MemoryBus("memory://")
    await publisher.connect()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield Harness(app, client, auth, vault, publisher)
    await publisher.close()


def _orm_project(harness: Harness, project_id: str, role: str) -> dict[str, Any]:
    """What the ORM path answered for the project (ProjectOut of the stored rows)."""
    runtime = harness.app.state.runtime
    with runtime.db.session() as session:
        project = session.get(Project, uuid.UUID(project_id))
        assert project is not None
    status = service.run_status(runtime, run_id=project.current_run_id)
    return project_out(project, role=role, status=status).model_dump(mode="json")


def _orm_runs(harness: Harness, project_id: str) -> list[dict[str, Any]]:
    runtime = harness.app.state.runtime
    runs = service.list_runs(runtime, project_id=uuid.UUID(project_id))
    return [run_out(r).model_dump(mode="json") for r in runs]


async def test_answers_are_those_of_the_orm_path(any_db: Harness) -> None:
    harness = any_db
    c = harness.client
    _, owner = harness.login()
    project = await harness.create_project(
        owner, train={"args": {"learning_rate": 2.5e-05, "epochs": 3}}
    )
    pid = project["id"]
    # a run with every column set: progress JSON, stage times, an error, a deployment id
    runtime = harness.app.state.runtime
    with runtime.db.session() as session:
        run = session.get(Run, uuid.UUID(project["current_run_id"]))
        assert run is not None
        now = datetime.now(UTC)
        run.status, run.error = "failed", "out of memory — ünïcode"
        run.progress = {"step": 3, "loss": 0.125, "metrics": {"acc": None}}
        run.preparing_at = run.training_at = run.finished_at = now
        run.deployment_id, run.model_version, run.endpoint = uuid.uuid4(), "v1", "http://x/y"
        session.add(run)
        session.commit()
    second = await c.post(f"/api/projects/{pid}/runs", headers=owner)
    assert second.status_code == 201, second.text

    listed = await c.get("/api/projects", headers=owner)
    assert listed.status_code == 200
    assert listed.headers["content-type"] == "application/json"
    assert listed.json() == [_orm_project(harness, pid, "owner")]
    got = await c.get(f"/api/projects/{pid}", headers=owner)
    assert got.json() == _orm_project(harness, pid, "owner")
    assert got.json()["status"] == "queued"  # the current run is the second one

    runs = await c.get(f"/api/projects/{pid}/runs", headers=owner)
    assert runs.status_code == 200
    assert runs.json() == _orm_runs(harness, pid)
    assert [r["number"] for r in runs.json()] == [2, 1]
    first = runs.json()[1]
    assert first["progress"] == {"step": 3, "loss": 0.125, "metrics": {"acc": None}}
    one = await c.get(f"/api/runs/{first['id']}", headers=owner)
    assert one.json() == first
    assert first["finished_at"].endswith("Z")  # UTC, as pydantic writes it

    # a project without runs lists none (the outer join's empty row is not a run)
    with runtime.db.session() as session:
        bare = Project(name="bare", spec={}, owner_id=uuid.uuid4())
        session.add(bare)
        session.commit()
    _, admin = harness.login(admin=True)
    empty = await c.get(f"/api/projects/{bare.id}/runs", headers=admin)
    assert empty.status_code == 200 and empty.json() == []


async def test_access_is_checked_in_the_same_query(harness: Harness) -> None:
    c = harness.client
    _, owner = harness.login("owner@example.com")
    project = await harness.create_project(owner)
    pid, rid = project["id"], project["current_run_id"]
    await harness.add_member(pid, owner, "viewer@example.com", "viewer")
    _, viewer = harness.login("viewer@example.com")
    _, outsider = harness.login("outsider@example.com")
    _, admin = harness.login("admin@example.com", admin=True)
    paths = [f"/api/projects/{pid}", f"/api/projects/{pid}/runs", f"/api/runs/{rid}"]

    for path in paths:
        assert (await c.get(path, headers=viewer)).status_code == 200, path
        denied = await c.get(path, headers=outsider)
        assert denied.status_code == 404, path
        assert denied.json()["error"]["code"] == "not_found"
        assert (await c.get(path, headers=admin)).status_code == 200, path  # reads all
    assert (await c.get(f"/api/projects/{pid}", headers=viewer)).json()["role"] == "viewer"
    assert (await c.get(f"/api/projects/{pid}", headers=admin)).json()["role"] == "viewer"
    assert (await c.get("/api/projects", headers=outsider)).json() == []
    assert (await c.get("/api/projects", headers=admin)).json() == []  # holds no role
    everything = await c.get("/api/projects", params={"all": "true"}, headers=admin)
    assert [(p["id"], p["role"]) for p in everything.json()] == [(pid, "viewer")]
    not_admin = await c.get("/api/projects", params={"all": "true"}, headers=viewer)
    assert not_admin.status_code == 403  # the listing of every project is administration

    unknown = uuid.uuid4()
    for path in (f"/api/projects/{unknown}", f"/api/projects/{unknown}/runs"):
        assert (await c.get(path, headers=owner)).status_code == 404
    assert (await c.get(f"/api/runs/{unknown}", headers=owner)).json()["error"][
        "message"
    ] == "run not found"
    for path in ("/api/projects/not-a-uuid", "/api/projects/1/runs", "/api/runs/x'--"):
        assert (await c.get(path, headers=owner)).status_code == 422, path

    user_id, email = harness.auth.user("owner@example.com")
    deploy_only = harness.auth.token(user_id, email, scope="deploy")
    for path in [*paths, "/api/projects"]:
        refused = await c.get(path, headers={"Authorization": f"Bearer {deploy_only}"})
        assert refused.status_code == 403, path
        assert refused.json()["error"]["code"] == "insufficient_scope"
    assert (await c.get(paths[0])).status_code == 401
