"""Roles: another user's project is 404; viewers read only; editors run; owners manage."""

from __future__ import annotations

from tests.unit.gateway.conftest import SPEC, Harness


async def _add(
    harness: Harness, project_id: str, headers: dict[str, str], email: str, role: str
) -> int:
    r = await harness.client.post(
        f"/api/projects/{project_id}/members", json={"email": email, "role": role}, headers=headers
    )
    return r.status_code


async def test_roles(harness: Harness) -> None:
    _, owner = harness.login("owner@example.com")
    viewer_id, viewer = harness.login("viewer@example.com")
    _, editor = harness.login("editor@example.com")
    _, stranger = harness.login("stranger@example.com")
    project = await harness.create_project(owner)
    pid = project["id"]
    c = harness.client

    assert (await c.get(f"/api/projects/{pid}", headers=stranger)).status_code == 404
    assert (await c.delete(f"/api/projects/{pid}", headers=stranger)).status_code == 404

    assert await _add(harness, pid, owner, "viewer@example.com", "viewer") == 201
    assert await _add(harness, pid, owner, "editor@example.com", "editor") == 201
    assert await _add(harness, pid, owner, "nobody@example.com", "viewer") == 404
    assert await _add(harness, pid, editor, "stranger@example.com", "viewer") == 403
    assert await _add(harness, pid, stranger, "stranger@example.com", "viewer") == 404

    members = (await c.get(f"/api/projects/{pid}/members", headers=viewer)).json()
    assert {m["email"]: m["role"] for m in members} == {
        "owner@example.com": "owner",
        "viewer@example.com": "viewer",
        "editor@example.com": "editor",
    }

    # the viewer reads but changes nothing
    assert (await c.get(f"/api/projects/{pid}", headers=viewer)).json()["role"] == "viewer"
    assert (
        await c.patch(f"/api/projects/{pid}", json={"name": "x"}, headers=viewer)
    ).status_code == 403
    assert (await c.post(f"/api/projects/{pid}/runs", headers=viewer)).status_code == 403
    run_id = project["current_run_id"]
    assert (await c.post(f"/api/runs/{run_id}/cancel", headers=viewer)).status_code == 403
    assert (await c.delete(f"/api/projects/{pid}", headers=viewer)).status_code == 403

    # the editor changes, but does not delete
    assert (
        await c.patch(f"/api/projects/{pid}", json={"name": "y"}, headers=editor)
    ).status_code == 200
    assert (await c.delete(f"/api/projects/{pid}", headers=editor)).status_code == 403
    assert (await c.post(f"/api/runs/{run_id}/cancel", headers=editor)).status_code == 200

    # a role change answers 200; the last owner cannot be demoted
    assert await _add(harness, pid, owner, "viewer@example.com", "editor") == 200
    assert await _add(harness, pid, owner, "owner@example.com", "viewer") == 409

    # members leave by themselves; others are removed by owners only
    assert (
        await c.delete(f"/api/projects/{pid}/members/{viewer_id}", headers=editor)
    ).status_code == 403
    assert (
        await c.delete(f"/api/projects/{pid}/members/{viewer_id}", headers=viewer)
    ).status_code == 204
    assert (await c.get(f"/api/projects/{pid}", headers=viewer)).status_code == 404


async def test_member_body_is_strict(harness: Harness) -> None:
    _, owner = harness.login()
    project = await harness.create_project(owner, **{"name": SPEC["name"]})
    r = await harness.client.post(
        f"/api/projects/{project['id']}/members",
        json={"email": "a@b.c", "role": "admin"},
        headers=owner,
    )
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("role:")
