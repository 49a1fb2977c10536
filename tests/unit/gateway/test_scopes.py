"""Token scopes on every route: the table covers the app, and the dependency enforces it."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIWebSocketRoute
from starlette.routing import Mount

from services.gateway.scopes import ROUTE_SCOPES, WEBSOCKET
from shared.scopes import Scope
from tests.unit.gateway import wsclient
from tests.unit.gateway.conftest import SPEC, Harness, Served


def _routes(app: FastAPI) -> list[tuple[str, str, bool]]:
    """(method, path template, takes a bearer token) of every route the app serves."""
    found: list[tuple[str, str, bool]] = []

    def add(route: Any) -> None:
        if isinstance(route, Mount):
            return  # static files (docs assets): no handler of ours
        path = getattr(route, "path_format", None) or getattr(route, "path", "")
        if isinstance(route, APIWebSocketRoute):
            found.append((WEBSOCKET, str(route.path), True))
            return
        dependant = getattr(route, "dependant", None)
        names = _dependency_names(dependant) if dependant is not None else set()
        for method in sorted(getattr(route, "methods", None) or ()):
            # _openai_caller: the OpenAI-compatible routes' own (errors in OpenAI's shape)
            found.append((method, str(path), bool(names & {"_current_user", "_openai_caller"})))

    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is None:
            add(route)
            continue
        for context in contexts():
            original = context.original_route
            if isinstance(original, APIWebSocketRoute):
                found.append((WEBSOCKET, str(context.path or original.path), True))
            else:
                add(context)
    return found


def _dependency_names(dependant: Any) -> set[str]:
    names = {getattr(dependant.call, "__name__", "")}
    for sub in dependant.dependencies:
        names |= _dependency_names(sub)
    return names


def test_every_route_has_a_scope_mapping(harness: Harness) -> None:
    routes = _routes(harness.app)
    assert len(routes) > 40
    unmapped = [
        (m, p) for m, p, _ in routes if (m if m != "HEAD" else "GET", p) not in ROUTE_SCOPES
    ]
    assert unmapped == [], f"map these routes in services/gateway/scopes.py: {unmapped}"
    # every route that takes a bearer token needs a scope; public ones map to None
    for method, path, authenticated in routes:
        scope = ROUTE_SCOPES[(method if method != "HEAD" else "GET", path)]
        assert (scope is not None) == authenticated, (method, path, scope)
    # the rule: platform administration needs admin; the OpenAI API and predictions need
    # predict; reads need read; deployments deploy; every other change run
    for (method, path), scope in ROUTE_SCOPES.items():
        if scope is None:
            continue
        if path.startswith("/api/admin/"):
            assert scope is Scope.ADMIN, (method, path)
        elif "/v1/" in path:  # the OpenAI-compatible API: a predict key lists models too
            assert scope is Scope.PREDICT, (method, path)
        elif method in ("GET", WEBSOCKET):
            assert scope is Scope.READ, (method, path)
        elif path.endswith("/predict"):
            assert scope is Scope.PREDICT
        elif "/deploy" in path or path.endswith("/endpoint/rollback"):  # the live alias
            assert scope is Scope.DEPLOY, (method, path)
        else:
            assert scope is Scope.RUN, (method, path)


async def test_a_read_only_api_token_reads_but_changes_nothing(harness: Harness) -> None:
    user_id, owner = harness.login()
    project = await harness.create_project(owner)
    token = harness.auth.api_token(user_id, scopes=["read"])
    headers = {"Authorization": f"Bearer {token}"}
    c = harness.client
    assert (await c.get(f"/api/projects/{project['id']}", headers=headers)).status_code == 200
    r = await c.post("/api/projects", json={"name": "x", "spec": SPEC}, headers=headers)
    assert r.status_code == 403
    error = r.json()["error"]
    assert error["code"] == "insufficient_scope" and "'run'" in error["message"]
    r = await c.put("/api/secrets/HF_TOKEN", json={"value": "v"}, headers=headers)
    assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_scope"
    r = await c.post(f"/api/projects/{project['id']}/runs", headers=headers)
    assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_scope"


async def test_a_predict_only_token_cannot_read_or_deploy(harness: Harness) -> None:
    user_id, _ = harness.login()
    headers = {"Authorization": f"Bearer {harness.auth.api_token(user_id, scopes=['predict'])}"}
    r = await harness.client.get("/api/projects", headers=headers)
    assert r.status_code == 403 and "'read'" in r.json()["error"]["message"]
    r = await harness.client.post("/api/models/m1/deploy", headers=headers)
    assert r.status_code == 403 and "'deploy'" in r.json()["error"]["message"]


async def test_a_session_jwt_scope_claim_narrows_it(harness: Harness) -> None:
    user_id, email = harness.auth.user()
    narrow = harness.auth.token(user_id, email, scope="read")
    headers = {"Authorization": f"Bearer {narrow}"}
    assert (await harness.client.get("/api/projects", headers=headers)).status_code == 200
    r = await harness.client.post(
        "/api/projects", json={"name": "x", "spec": SPEC}, headers=headers
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_scope"
    # no scope claim: every scope of the user; "admin" is never granted to a non-admin
    full = {"Authorization": f"Bearer {harness.auth.token(user_id, email)}"}
    r = await harness.client.post("/api/projects", json={"name": "x", "spec": SPEC}, headers=full)
    assert r.status_code == 201


async def test_the_websocket_needs_the_read_scope(served: Served) -> None:
    user_id, _ = served.auth.user()
    ws = await wsclient.connect(served.ws_url)
    token = served.auth.api_token(user_id, scopes=["predict"])
    await ws.send(json.dumps({"type": "auth", "token": token}))
    assert await wsclient.close_code(ws) == 4403
    ws = await wsclient.authed(served.ws_url, served.auth.api_token(user_id, scopes=["read"]))
    await ws.close()


async def test_the_admin_listing_needs_the_admin_scope(harness: Harness) -> None:
    _, someone = harness.login()
    project = await harness.create_project(someone)
    admin_id, admin_email = harness.auth.user()
    c = harness.client
    # an admin's read-only token (a CI key): its own listing works, every tenant's does not
    read_only = harness.auth.token(admin_id, admin_email, admin=True, scope="read")
    headers = {"Authorization": f"Bearer {read_only}"}
    r = await c.get("/api/projects", headers=headers)
    assert r.status_code == 200 and r.json() == []
    r = await c.get("/api/projects?all=true", headers=headers)
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert error["code"] == "insufficient_scope" and "'admin'" in error["message"]
    # with the admin scope the same admin lists every project
    full = harness.auth.token(admin_id, admin_email, admin=True, scope="read admin")
    r = await c.get("/api/projects?all=true", headers={"Authorization": f"Bearer {full}"})
    assert r.status_code == 200 and [p["id"] for p in r.json()] == [project["id"]]
    # a non-admin never holds the scope: all=true is refused, not silently narrowed
    r = await c.get("/api/projects?all=true", headers=someone)
    assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_scope"
    assert [p["id"] for p in (await c.get("/api/projects", headers=someone)).json()] == [
        project["id"]
    ]
