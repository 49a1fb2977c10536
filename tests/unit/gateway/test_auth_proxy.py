"""The gateway's auth proxy forwards only the auth service's public routes (issue 12, item 4).

Every traversal form (percent-encoded dots and slashes, double encoding, backslashes,
literal dot segments) answers 404 from the gateway itself, with and without a token, and
never reaches the auth service: not its ``/internal/*`` API, not its ``openapi.json``.
The requests go over a real socket to uvicorn, exactly as a client sends them.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest

from services.gateway.routes.auth_proxy import PUBLIC_ROUTES
from tests.unit.gateway.conftest import Harness, Served

LOOKUP = "internal/users/lookup?email=victim@example.com"

HOSTILE: list[tuple[str, str]] = [
    ("GET", f"/api/auth/%2e%2e/%2e%2e/{LOOKUP}"),
    ("GET", f"/api/auth/%2E%2E/%2E%2E/{LOOKUP}"),
    ("GET", f"/api/auth/..%2f..%2f{LOOKUP}"),
    ("GET", f"/api/auth/..%2F..%2F{LOOKUP}"),
    ("GET", f"/api/auth/%2e%2e%2f%2e%2e%2f{LOOKUP}"),
    ("GET", f"/api/auth/%252e%252e/%252e%252e/{LOOKUP}"),
    ("GET", f"/api/auth/..%252f..%252f{LOOKUP}"),
    ("GET", f"/api/auth/%252e%252e%252f%252e%252e%252f{LOOKUP}"),
    ("GET", f"/api/auth/..\\..\\{LOOKUP}"),
    ("GET", f"/api/auth/..%5c..%5c{LOOKUP}"),
    ("GET", f"/api/auth/../../{LOOKUP}"),
    ("GET", f"/api/auth/./../../{LOOKUP}"),
    ("GET", f"/api/auth/me/..%2f..%2f..%2f{LOOKUP}"),
    ("GET", f"/api/auth/me%2f..%2f..%2f..%2f{LOOKUP}"),
    ("GET", f"/api/auth/login/%2e%2e/%2e%2e/%2e%2e/{LOOKUP}"),
    ("GET", f"/api/auth/%2e%2e/%2e%2e/internal/users/{uuid.uuid4()}"),
    ("POST", "/api/auth/%2e%2e/%2e%2e/internal/introspect"),
    ("POST", "/api/auth/..%2f..%2finternal/introspect"),
    ("GET", "/api/auth/%2e%2e/%2e%2e/openapi.json"),
    ("GET", "/api/auth/..%2f..%2fopenapi.json"),
    ("GET", "/api/auth/openapi.json"),
    ("GET", "/api/auth/%2e%2e/%2e%2e/docs"),
    ("GET", "/api/auth/%6de"),  # "me", encoded
    ("GET", "/api/auth/jwks%2f"),
    ("GET", "/api/auth/jwks/"),
    ("GET", "/api/auth//jwks"),
    ("GET", "/api/auth/unknown"),
    ("GET", "/api/auth/login"),  # a public path, but not with this method
    ("DELETE", "/api/auth/tokens"),
    ("DELETE", "/api/auth/tokens/not-a-token-id"),
]


def _send(base: str, method: str, target: str, headers: dict[str, str]) -> tuple[int, Any]:
    """One request with ``target`` sent byte for byte (no client-side normalisation)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        body = json.dumps({"token": "aidp_x"}) if method == "POST" else None
        sent = {**headers, "Content-Type": "application/json"} if body else headers
        conn.request(method, target, body=body, headers=sent)
        response = conn.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode(errors="replace")
    finally:
        conn.close()


@pytest.mark.parametrize("with_token", [False, True], ids=["anonymous", "token"])
@pytest.mark.parametrize(("method", "target"), HOSTILE)
async def test_traversal_and_unlisted_routes_answer_404(
    served: Served, method: str, target: str, with_token: bool
) -> None:
    user_id, email = served.auth.user("victim@example.com")
    headers = {"Authorization": f"Bearer {served.auth.token(user_id, email)}"} if with_token else {}
    before = list(served.auth.seen)
    status, body = await asyncio.to_thread(_send, served.url, method, target, headers)
    assert status == 404, body
    assert isinstance(body, dict) and body["error"]["code"] == "not_found", body
    assert served.auth.seen == before  # the auth service was never asked


async def test_public_routes_are_forwarded(served: Served) -> None:
    user_id, email = served.auth.user()
    token = {"Authorization": f"Bearer {served.auth.token(user_id, email)}"}
    status, body = await asyncio.to_thread(_send, served.url, "GET", "/api/auth/jwks", {})
    assert status == 200 and body["keys"]
    status, body = await asyncio.to_thread(_send, served.url, "GET", "/api/auth/me?x=1", token)
    assert status == 200 and body["query"] == "x=1"
    token_id = str(uuid.uuid4())
    await asyncio.to_thread(_send, served.url, "DELETE", f"/api/auth/tokens/{token_id}", token)
    assert served.auth.seen[-3:] == [
        "/api/auth/jwks",
        "/api/auth/me",
        f"/api/auth/tokens/{token_id}",
    ]


async def test_in_process_requests_are_filtered_too(harness: Harness) -> None:
    before = list(harness.auth.seen)
    r = await harness.client.get(f"/api/auth/%2e%2e/%2e%2e/{LOOKUP}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await harness.client.post("/api/auth/..%2f..%2finternal/introspect", json={"token": "x"})
    assert r.status_code == 404
    assert harness.auth.seen == before


def test_allow_list_is_the_auth_services_public_routes() -> None:
    from services.auth.routes import router
    from services.auth.sso_routes import router as sso_router

    routes = {
        (method, str(getattr(route, "path", "")).removeprefix("/api/auth/"))
        for route in [*router.routes, *sso_router.routes]
        for method in getattr(route, "methods", ())
    }
    routes = {(m, p.replace("{token_id}", "{id}")) for m, p in routes}
    listed = {(method, path) for path, methods in PUBLIC_ROUTES.items() for method in methods}
    assert listed == routes
