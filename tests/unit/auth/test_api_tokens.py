"""API tokens: shown once, listed without value, usable via introspection, revocable."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.unit.auth.conftest import bearer, login, register


def _session(client: TestClient, email: str) -> dict[str, str]:
    register(client, email)
    return bearer(login(client, email)["access_token"])


def test_create_list_use_revoke(client: TestClient) -> None:
    headers = _session(client, "ci@example.com")
    r = client.post("/api/auth/tokens", json={"name": "ci", "expires_in_days": 30}, headers=headers)
    assert r.status_code == 201
    created = r.json()
    value = created["token"]
    assert value.startswith("aidp_") and len(value) > 40
    assert created["expires_at"] is not None

    listed = client.get("/api/auth/tokens", headers=headers).json()
    assert [t["id"] for t in listed] == [created["id"]]
    assert "token" not in listed[0] and "token_hash" not in listed[0]
    assert value not in client.get("/api/auth/tokens", headers=headers).text
    assert listed[0]["last_used_at"] is None

    r = client.post("/internal/introspect", json={"token": value})
    assert r.status_code == 200
    assert r.json() == {
        "user_id": r.json()["user_id"],
        "email": "ci@example.com",
        "is_admin": True,
        "kind": "api",
        "scopes": ["read"],  # no scopes asked: read only, never a full account key
        "not_before": None,
    }
    assert client.get("/api/auth/me", headers=bearer(value)).json()["email"] == "ci@example.com"
    assert client.get("/api/auth/tokens", headers=headers).json()[0]["last_used_at"] is not None

    assert client.delete(f"/api/auth/tokens/{created['id']}", headers=headers).status_code == 204
    assert client.post("/internal/introspect", json={"token": value}).status_code == 401
    assert client.get("/api/auth/tokens", headers=headers).json() == []
    assert client.delete(f"/api/auth/tokens/{created['id']}", headers=headers).status_code == 404


def test_another_users_token_is_404_and_stays_valid(client: TestClient) -> None:
    alice = _session(client, "alice@example.com")
    mallory = _session(client, "mallory@example.com")
    created = client.post("/api/auth/tokens", json={"name": "a"}, headers=alice).json()
    r = client.delete(f"/api/auth/tokens/{created['id']}", headers=mallory)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    assert client.get("/api/auth/tokens", headers=mallory).json() == []
    assert client.post("/internal/introspect", json={"token": created["token"]}).status_code == 200


def test_forged_api_tokens_are_401(client: TestClient) -> None:
    headers = _session(client, "forge@example.com")
    value = client.post("/api/auth/tokens", json={"name": "x"}, headers=headers).json()["token"]
    prefix, _, secret = value.rpartition("_")
    candidates = [
        "aidp_",
        "aidp_x",
        "aidp_" + "0" * 24 + "_" + secret,
        value[:-1],
        value + "x",
        prefix + "_" + secret[::-1],
        value.replace("aidp_", "aidp-"),
    ]
    for forged in candidates:
        assert client.post("/internal/introspect", json={"token": forged}).status_code == 401


def test_api_tokens_cannot_manage_tokens_or_log_out(client: TestClient) -> None:
    headers = _session(client, "limited@example.com")
    created = client.post("/api/auth/tokens", json={"name": "x"}, headers=headers).json()
    api = bearer(created["token"])
    assert client.post("/api/auth/tokens", json={"name": "y"}, headers=api).status_code == 403
    assert client.post("/api/auth/logout", headers=api).status_code == 403
    assert client.get("/api/auth/tokens", headers=api).status_code == 200


def test_expiry_bounds_are_validated(client: TestClient) -> None:
    headers = _session(client, "bounds@example.com")
    for days in (0, -1, 100000):
        r = client.post(
            "/api/auth/tokens", json={"name": "x", "expires_in_days": days}, headers=headers
        )
        assert r.status_code == 422
        assert r.json()["error"]["message"].startswith("expires_in_days:")


def test_expired_api_token_is_refused(client: TestClient) -> None:
    from datetime import timedelta

    from services.auth.models import ApiToken, utcnow

    headers = _session(client, "old@example.com")
    created = client.post(
        "/api/auth/tokens", json={"name": "x", "expires_in_days": 1}, headers=headers
    ).json()
    db = client.app.state.auth.db  # type: ignore[attr-defined]
    with db.session() as session:
        row = session.get(ApiToken, created["id"])
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.add(row)
        session.commit()
    assert client.post("/internal/introspect", json={"token": created["token"]}).status_code == 401
