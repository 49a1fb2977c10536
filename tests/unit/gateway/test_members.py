"""Roles: another user's project is 404; viewers read only; editors run; owners manage.
Member-add is an invitation the invitee accepts or declines."""

from __future__ import annotations

from pathlib import Path

import httpx

from services.gateway.main import create_app
from shared.secrets import InMemoryVault
from tests.unit.gateway.authstub import AuthStub
from tests.unit.gateway.conftest import SPEC, Harness, gateway_settings


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

    await harness.add_member(pid, owner, "viewer@example.com", "viewer")
    await harness.add_member(pid, owner, "editor@example.com", "editor")
    assert await _add(harness, pid, owner, "nobody@example.com", "viewer") == 202  # no oracle
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


async def test_member_add_is_an_invitation_the_invitee_accepts(harness: Harness) -> None:
    c = harness.client
    _, owner = harness.login("own@example.com")
    _, invitee = harness.login("inv@example.com")
    pid = (await harness.create_project(owner))["id"]

    r = await c.post(
        f"/api/projects/{pid}/members",
        json={"email": "inv@example.com", "role": "editor"},
        headers=owner,
    )
    assert r.status_code == 202 and r.json()["status"] == "invited", r.text
    invitation = r.json()
    # no access until accepted
    assert (await c.get(f"/api/projects/{pid}", headers=invitee)).status_code == 404
    pending = (await c.get("/api/invitations", headers=invitee)).json()
    assert [(i["id"], i["project_name"], i["role"]) for i in pending] == [
        (invitation["id"], "p", "editor")
    ]
    owners_view = (await c.get(f"/api/projects/{pid}/invitations", headers=owner)).json()
    assert [i["email"] for i in owners_view] == ["inv@example.com"]
    # nobody else can accept it
    _, other = harness.login()
    accept = f"/api/invitations/{invitation['id']}/accept"
    assert (await c.post(accept, headers=other)).status_code == 404

    r = await c.post(accept, headers=invitee)
    assert r.status_code == 200 and r.json()["role"] == "editor", r.text
    assert (await c.get(f"/api/projects/{pid}", headers=invitee)).json()["role"] == "editor"
    assert (await c.get("/api/invitations", headers=invitee)).json() == []
    assert (await c.post(accept, headers=invitee)).status_code == 404  # used up
    actions = [
        e["action"]
        for e in (await c.get(f"/api/projects/{pid}/audit", headers=owner)).json()["entries"]
    ]
    assert actions[-2:] == ["member_invited", "member_added"]


async def test_declined_or_withdrawn_invitation_gives_no_access(harness: Harness) -> None:
    c = harness.client
    _, owner = harness.login("o2@example.com")
    _, invitee = harness.login("i2@example.com")
    pid = (await harness.create_project(owner))["id"]
    body = {"email": "i2@example.com", "role": "viewer"}
    first = await c.post(f"/api/projects/{pid}/members", json=body, headers=owner)
    assert (
        await c.post(f"/api/invitations/{first.json()['id']}/decline", headers=invitee)
    ).status_code == 204
    assert (await c.get("/api/invitations", headers=invitee)).json() == []
    assert (await c.get(f"/api/projects/{pid}", headers=invitee)).status_code == 404

    second = await c.post(f"/api/projects/{pid}/members", json=body, headers=owner)
    iid = second.json()["id"]
    assert (
        await c.delete(f"/api/projects/{pid}/invitations/{iid}", headers=owner)
    ).status_code == 204
    assert (await c.post(f"/api/invitations/{iid}/accept", headers=invitee)).status_code == 404
    assert (await c.get(f"/api/projects/{pid}", headers=invitee)).status_code == 404


async def test_member_add_does_not_reveal_registration(harness: Harness) -> None:
    _, owner = harness.login("o3@example.com")
    harness.login("registered@example.com")
    pid = (await harness.create_project(owner))["id"]

    async def answer(email: str) -> tuple[int, set[str]]:
        r = await harness.client.post(
            f"/api/projects/{pid}/members", json={"email": email, "role": "viewer"}, headers=owner
        )
        return r.status_code, set(r.json())

    assert await answer("registered@example.com") == await answer("ghost@example.com")
    assert (await answer("ghost@example.com"))[0] == 202


async def test_an_invitation_to_an_unregistered_email_waits_for_its_owner(
    harness: Harness,
) -> None:
    _, owner = harness.login("o4@example.com")
    pid = (await harness.create_project(owner))["id"]
    r = await harness.client.post(
        f"/api/projects/{pid}/members",
        json={"email": "later@example.com", "role": "viewer"},
        headers=owner,
    )
    assert r.status_code == 202
    _, later = harness.login("later@example.com")  # registers afterwards
    pending = (await harness.client.get("/api/invitations", headers=later)).json()
    assert [i["id"] for i in pending] == [r.json()["id"]]


async def test_member_add_is_rate_limited_per_user(tmp_path: Path, auth: AuthStub) -> None:
    vault = InMemoryVault()
    settings = gateway_settings(tmp_path, auth.url, member_invites_per_hour=3)  # type: ignore[attr-defined]
    app = create_app(settings, vault=(vault, vault))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
            user_id, email = auth.user()
            owner = {"Authorization": f"Bearer {auth.token(user_id, email)}"}
            r = await c.post("/api/projects", json={"name": "p", "spec": SPEC}, headers=owner)
            pid = r.json()["id"]
            codes = []
            for n in range(4):
                r = await c.post(
                    f"/api/projects/{pid}/members",
                    json={"email": f"x{n}@example.com", "role": "viewer"},
                    headers=owner,
                )
                codes.append(r.status_code)
            assert codes == [202, 202, 202, 429]
            assert r.json()["error"]["code"] == "rate_limited" and "Retry-After" in r.headers
