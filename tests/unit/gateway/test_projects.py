"""Projects: creation with run 1 and ProjectCreated in one transaction, strict bodies,
changes, deletion with teardown events."""

from __future__ import annotations

import uuid

from sqlmodel import col, select

from services.gateway.models import Event, Member, Project, Run
from shared.bus.memory import MemoryBus
from shared.events import Envelope
from shared.outbox import OutboxRow
from tests.unit.gateway.conftest import SPEC, Harness, wait_until


async def _capture(types: list[str]) -> tuple[MemoryBus, list[Envelope]]:
    seen: list[Envelope] = []
    bus = MemoryBus("memory://")
    await bus.connect()

    async def handler(envelope: Envelope) -> None:
        seen.append(envelope)

    await bus.subscribe("test-capture", types, handler)
    return bus, seen


async def test_create_project_stores_run_and_emits_project_created(harness: Harness) -> None:
    bus, seen = await _capture(["ProjectCreated"])
    user_id, headers = harness.login()
    body = await harness.create_project(headers)
    assert body["name"] == "p" and body["status"] == "queued" and body["role"] == "owner"
    assert body["spec"]["model"] == SPEC["model"]
    project_id, run_id = uuid.UUID(body["id"]), uuid.UUID(body["current_run_id"])

    envelope = await wait_until(lambda: seen and seen[0])
    assert envelope.project_id == project_id and envelope.run_id == run_id
    assert envelope.payload["owner_id"] == str(user_id)
    assert envelope.payload["spec"]["dataset"] == SPEC["dataset"]

    db = harness.app.state.runtime.db
    with db.session() as s:
        run = s.get(Run, run_id)
        assert run is not None and run.number == 1
        assert s.get(Member, (project_id, user_id)).role == "owner"  # type: ignore[union-attr]
        rows = s.exec(select(OutboxRow).where(OutboxRow.event_type == "ProjectCreated")).all()
        assert len(rows) == 1
    # the gateway's own consumer stores it as seq 1 of the project's log
    await wait_until(lambda: _events(harness, project_id))
    assert [e.seq for e in _events(harness, project_id)] == [1]
    await bus.close()


def _events(harness: Harness, project_id: uuid.UUID) -> list[Event]:
    with harness.app.state.runtime.db.session() as s:
        return list(
            s.exec(select(Event).where(Event.project_id == project_id).order_by(col(Event.seq)))
        )


async def test_unknown_field_is_422_naming_it(harness: Harness) -> None:
    _, headers = harness.login()
    r = await harness.client.post(
        "/api/projects", json={"name": "p", "spec": SPEC, "colour": "red"}, headers=headers
    )
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid"
    assert "colour" in r.json()["error"]["message"]

    r = await harness.client.post(
        "/api/projects",
        json={"name": "p", "spec": {**SPEC, "resources": {"nodes": 0}}},
        headers=headers,
    )
    assert r.status_code == 422
    assert "spec.resources.nodes" in r.json()["error"]["message"]

    r = await harness.client.post(
        "/api/projects", json={"name": "p", "spec": {**SPEC, "gpu": 1}}, headers=headers
    )
    assert r.status_code == 422 and "spec.gpu: unknown field" in r.json()["error"]["message"]


async def test_invalid_json_body_is_422_not_500(harness: Harness) -> None:
    _, headers = harness.login()
    r = await harness.client.post(
        "/api/projects",
        content=b"{not json",
        headers={**headers, "Content-Type": "application/json"},
    )
    assert r.status_code == 422


async def test_list_get_patch(harness: Harness) -> None:
    _, headers = harness.login()
    _, other = harness.login()
    mine = await harness.create_project(headers)
    await harness.create_project(other)

    listed = (await harness.client.get("/api/projects", headers=headers)).json()
    assert [p["id"] for p in listed] == [mine["id"]]

    r = await harness.client.patch(
        f"/api/projects/{mine['id']}",
        json={"name": "renamed", "spec": {**SPEC, "name": "other"}},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    got = (await harness.client.get(f"/api/projects/{mine['id']}", headers=headers)).json()
    assert got["name"] == "renamed" and got["spec"]["name"] == "other"


async def test_admin_lists_everything_only_when_asked(harness: Harness) -> None:
    _, headers = harness.login()
    project = await harness.create_project(headers)
    _, admin = harness.login(admin=True)
    assert (await harness.client.get("/api/projects", headers=admin)).json() == []
    listed = (await harness.client.get("/api/projects?all=true", headers=admin)).json()
    assert [p["id"] for p in listed] == [project["id"]] and listed[0]["role"] == "viewer"
    # reading is allowed, changing is not
    assert (
        await harness.client.get(f"/api/projects/{project['id']}", headers=admin)
    ).status_code == 200
    r = await harness.client.patch(
        f"/api/projects/{project['id']}", json={"name": "x"}, headers=admin
    )
    assert r.status_code == 403


async def test_delete_emits_teardown_and_removes_rows(harness: Harness) -> None:
    bus, seen = await _capture(["ProjectDeleted", "RunCancelled"])
    _, headers = harness.login()
    project = await harness.create_project(headers)
    project_id = uuid.UUID(project["id"])
    await wait_until(lambda: _events(harness, project_id))

    r = await harness.client.delete(f"/api/projects/{project_id}", headers=headers)
    assert r.status_code == 204
    await wait_until(lambda: len(seen) == 2)
    by_type = {e.type: e for e in seen}
    assert by_type["RunCancelled"].run_id == uuid.UUID(project["current_run_id"])
    assert by_type["ProjectDeleted"].payload["run_ids"] == [project["current_run_id"]]

    assert (
        await harness.client.get(f"/api/projects/{project_id}", headers=headers)
    ).status_code == 404
    with harness.app.state.runtime.db.session() as s:
        assert s.get(Project, project_id) is None
        assert not s.exec(select(Run).where(Run.project_id == project_id)).all()
        assert not s.exec(select(Member).where(Member.project_id == project_id)).all()
    assert _events(harness, project_id) == []
    await bus.close()
