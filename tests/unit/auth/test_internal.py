"""The gateway-facing internal API."""

from __future__ import annotations

import uuid

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
    }


def test_introspect_rejects_bad_bodies(client: TestClient) -> None:
    assert client.post("/internal/introspect", json={"token": ""}).status_code == 422
    assert client.post("/internal/introspect", json={"tok": "x"}).status_code == 422
    assert client.post("/internal/introspect", json={"token": "x.y.z"}).status_code == 401


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
