"""The gateway-facing internal API."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from tests.unit.auth.conftest import login, register


def test_lookup_by_email_is_case_insensitive(client: TestClient) -> None:
    user = register(client, "zoe@example.com")
    r = client.get("/internal/users/lookup", params={"email": " ZOE@example.com"})
    assert r.status_code == 200
    assert r.json() == {"id": user["id"], "email": "zoe@example.com"}


def test_lookup_unknown_or_malformed_is_404(client: TestClient) -> None:
    for email in ("ghost@example.com", "not-an-email"):
        r = client.get("/internal/users/lookup", params={"email": email})
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"


def test_get_user_by_id(client: TestClient) -> None:
    user = register(client, "yan@example.com")
    r = client.get(f"/internal/users/{user['id']}")
    assert r.status_code == 200
    assert r.json() == user
    assert client.get(f"/internal/users/{uuid.uuid4()}").status_code == 404


def test_introspect_access_token(client: TestClient) -> None:
    user = register(client, "xena@example.com")
    token = login(client, "xena@example.com")["access_token"]
    r = client.post("/internal/introspect", json={"token": token})
    assert r.status_code == 200
    assert r.json() == {
        "user_id": user["id"],
        "email": "xena@example.com",
        "is_admin": True,
        "kind": "access",
        "scopes": ["read", "run", "deploy", "predict", "admin"],
        "not_before": None,
    }


def test_introspect_rejects_bad_bodies(client: TestClient) -> None:
    assert client.post("/internal/introspect", json={"tok": "x"}).status_code == 422
    assert client.post("/internal/introspect", json={"token": "x" * 5000}).status_code == 422
    assert client.post("/internal/introspect", json={"token": "x.y.z"}).status_code == 401


@pytest.mark.parametrize(
    "token",
    [
        "",
        "aidp_",
        "aidp_x",
        "aidp__",
        "aidp_zz_yy",
        "aidp_" + "a" * 24 + "_" + "é" * 43,
        "aidp_" + "0" * 24 + "_" + "A" * 43,
        "aidp_\u0000_x",
        "aidp_" + "0" * 500,
        "Bearer aidp_x",
    ],
)
def test_malformed_api_tokens_are_inactive_not_errors(client: TestClient, token: str) -> None:
    """Issue 13: a malformed ``aidp_…`` token answered 503 at the gateway; introspection
    calls any malformed token inactive (401), never a 422 or 5xx."""
    r = client.post("/internal/introspect", json={"token": token})
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "unauthenticated"


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
