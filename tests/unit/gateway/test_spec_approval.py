"""Confused deputy (issue 12 item 5): a stored spec someone else changed runs with the
requester's credentials only once they confirm it; the owner reads the audit trail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData

from cli.sdk import ApiError, _decode
from services.gateway import models
from services.gateway.main import MIGRATIONS
from services.gateway.projects import spec_hash
from shared.db import Database
from tests.unit.gateway.conftest import SPEC, Harness

EVIL: dict[str, Any] = {
    **SPEC,
    "task": "custom",
    "train": {"entrypoint": "train.py", "args": {"epochs": 1}},
    "secrets": ["HF_TOKEN"],
}


async def _start(
    harness: Harness, pid: str, headers: dict[str, str], **body: Any
) -> tuple[int, dict[str, Any]]:
    r = await harness.client.post(f"/api/projects/{pid}/runs", json=body, headers=headers)
    return r.status_code, r.json()


async def _cancel(harness: Harness, run_id: str, headers: dict[str, str]) -> None:
    r = await harness.client.post(f"/api/runs/{run_id}/cancel", headers=headers)
    assert r.status_code == 200, r.text


async def _patch(harness: Harness, pid: str, headers: dict[str, str], spec: Any) -> None:
    r = await harness.client.patch(f"/api/projects/{pid}", json={"spec": spec}, headers=headers)
    assert r.status_code == 200, r.text


async def _member(
    harness: Harness, pid: str, headers: dict[str, str], email: str, role: str
) -> None:
    await harness.add_member(pid, headers, email, role)


async def test_editor_changed_spec_needs_the_owners_confirmation(harness: Harness) -> None:
    owner_id, owner = harness.login("owner@example.com")
    editor_id, editor = harness.login("editor@example.com")
    project = await harness.create_project(owner)
    pid = project["id"]
    await _member(harness, pid, owner, "editor@example.com", "editor")
    await _cancel(harness, project["current_run_id"], owner)

    # the owner's own spec (run 1 started at creation) runs without confirmation
    status, run2 = await _start(harness, pid, owner)
    assert status == 201, run2
    await _cancel(harness, run2["id"], owner)

    # the editor swaps in a custom script that asks for the owner's HF token
    await _patch(harness, pid, editor, EVIL)
    status, body = await _start(harness, pid, owner)
    assert status == 409, body
    error = body["error"]
    assert error["code"] == "spec_changed"
    stored = (await harness.client.get(f"/api/projects/{pid}", headers=owner)).json()["spec"]
    assert error["spec_hash"] == spec_hash(stored)
    assert error["approved_spec_hash"] != error["spec_hash"]
    assert error["changed_by"] == str(editor_id)
    assert error["changed_by_email"] == "editor@example.com"
    assert error["changed_at"]
    assert "secrets" in error["changed_paths"] and "task" in error["changed_paths"]
    assert "+secrets:" in error["diff"] and "+- HF_TOKEN" in error["diff"]
    assert "-task: text-classification" in error["diff"] and "+task: custom" in error["diff"]
    runs = (await harness.client.get(f"/api/projects/{pid}/runs", headers=owner)).json()
    assert len(runs) == 2  # nothing started

    # a wrong hash is refused again, with the same details
    status, body = await _start(harness, pid, owner, confirm_spec_hash="0" * 64)
    assert status == 409 and body["error"]["code"] == "spec_changed", body
    assert body["error"]["spec_hash"] == error["spec_hash"]
    # a malformed one is invalid input
    status, body = await _start(harness, pid, owner, confirm_spec_hash="nope")
    assert status == 422, body

    # the right hash starts the run and records the approval
    status, run3 = await _start(harness, pid, owner, confirm_spec_hash=error["spec_hash"])
    assert status == 201, run3
    assert run3["number"] == 3
    await _cancel(harness, run3["id"], owner)
    status, run4 = await _start(harness, pid, owner)
    assert status == 201, run4  # approved once, not asked again
    await _cancel(harness, run4["id"], editor)

    # the editor wrote the spec: no confirmation for them
    status, run5 = await _start(harness, pid, editor)
    assert status == 201, run5
    await _cancel(harness, run5["id"], editor)

    # the owner changes it back: the owner needs none, the editor now does
    await _patch(harness, pid, owner, SPEC)
    status, body = await _start(harness, pid, editor)
    assert status == 409 and body["error"]["changed_by"] == str(owner_id), body
    assert "-secrets:" in body["error"]["diff"]
    status, run6 = await _start(harness, pid, owner)
    assert status == 201, run6
    await _cancel(harness, run6["id"], owner)

    # an override spec is the requester's own: no confirmation
    status, run7 = await _start(harness, pid, editor, spec=SPEC)
    assert status == 201, run7
    await _cancel(harness, run7["id"], editor)

    # the changer is still named after they left the project
    await _patch(harness, pid, editor, EVIL)
    r = await harness.client.delete(f"/api/projects/{pid}/members/{editor_id}", headers=editor)
    assert r.status_code == 204
    status, body = await _start(harness, pid, owner)
    assert status == 409 and body["error"]["changed_by_email"] == "editor@example.com", body


async def test_audit_trail_lists_events_in_order_for_the_owner_only(harness: Harness) -> None:
    owner_id, owner = harness.login("owner@example.com")
    editor_id, editor = harness.login("editor@example.com")
    viewer_id, viewer = harness.login("viewer@example.com")
    _, stranger = harness.login("stranger@example.com")
    project = await harness.create_project(owner)
    pid = project["id"]
    first_hash = spec_hash(project["spec"])
    await _member(harness, pid, owner, "editor@example.com", "editor")
    await _member(harness, pid, owner, "viewer@example.com", "viewer")
    await _member(harness, pid, owner, "viewer@example.com", "editor")
    await _cancel(harness, project["current_run_id"], owner)
    await _patch(harness, pid, editor, EVIL)
    status, body = await _start(harness, pid, owner)
    assert status == 409
    changed_hash = body["error"]["spec_hash"]
    status, run2 = await _start(harness, pid, owner, confirm_spec_hash=changed_hash)
    assert status == 201
    r = await harness.client.delete(f"/api/projects/{pid}/members/{viewer_id}", headers=owner)
    assert r.status_code == 204
    r = await harness.client.delete(f"/api/projects/{pid}/members/{editor_id}", headers=editor)
    assert r.status_code == 204

    r = await harness.client.get(f"/api/projects/{pid}/audit", headers=owner)
    assert r.status_code == 200, r.text
    page = r.json()
    entries = page["entries"]
    seen = [
        (
            e["action"],
            e["actor_id"],
            e["spec_hash"],
            e["run_number"],
            e["subject_email"],
            e["role"],
        )
        for e in entries
    ]
    o, ed, vi = str(owner_id), str(editor_id), str(viewer_id)
    assert seen == [
        ("project_created", o, first_hash, None, None, None),
        ("run_started", o, first_hash, 1, None, None),
        ("member_invited", o, None, None, "editor@example.com", "editor"),
        ("member_added", ed, None, None, "editor@example.com", "editor"),  # accepted
        ("member_invited", o, None, None, "viewer@example.com", "viewer"),
        ("member_added", vi, None, None, "viewer@example.com", "viewer"),
        ("member_role_changed", o, None, None, "viewer@example.com", "editor"),
        ("spec_changed", ed, changed_hash, None, None, None),
        ("spec_approved", o, changed_hash, None, None, None),
        ("run_started", o, changed_hash, 2, None, None),
        ("member_removed", o, None, None, "viewer@example.com", "editor"),
        ("member_left", ed, None, None, "editor@example.com", "editor"),
    ]
    assert entries[9]["run_id"] == run2["id"]
    assert entries[0]["actor_email"] == "owner@example.com"
    ids = [e["id"] for e in entries]
    assert ids == sorted(ids) and page["next_after"] == ids[-1]

    # paging
    r = await harness.client.get(
        f"/api/projects/{pid}/audit", params={"after": ids[1], "limit": 2}, headers=owner
    )
    assert [e["id"] for e in r.json()["entries"]] == ids[2:4]

    # only the owner reads it: members 403, others (and admins without a role) 404/403
    await _member(harness, pid, owner, "editor@example.com", "editor")
    await _member(harness, pid, owner, "viewer@example.com", "viewer")
    for headers, expected in ((editor, 403), (viewer, 403), (stranger, 404)):
        r = await harness.client.get(f"/api/projects/{pid}/audit", headers=headers)
        assert r.status_code == expected, r.text
    _, admin = harness.login("admin@example.com", admin=True)
    r = await harness.client.get(f"/api/projects/{pid}/audit", headers=admin)
    assert r.status_code == 403


def test_migration_matches_the_models(tmp_path: Path) -> None:
    """The tables this feature added or changed (gateway_events' run index is declared
    differently in the model, (run_id) vs the migration's (run_id, seq), since 0001)."""
    tables = ("gateway_projects", "gateway_spec_approvals", "gateway_audit")
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    db.migrate(MIGRATIONS, service="gateway")
    ours = MetaData()
    for table in models.SQLModel.metadata.tables.values():
        if table.name in tables:
            table.to_metadata(ours)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), ours)
    db.dispose()
    relevant = [d for d in diff if any(f"'{t}'" in repr(d) or f"<{t}>" in repr(d) for t in tables)]
    assert relevant == []


def test_sdk_error_keeps_the_spec_changed_details() -> None:
    error = {"code": "spec_changed", "message": "m", "spec_hash": "a" * 64, "diff": "+x"}
    with pytest.raises(ApiError) as caught:
        _decode(httpx.Response(409, json={"error": error}))
    assert caught.value.code == "spec_changed"
    assert caught.value.details["spec_hash"] == "a" * 64
    assert caught.value.details["diff"] == "+x"
