"""Issue 13, auth half: what a user revokes is revoked, and the gateway hears of it.

SessionsRevoked goes out through the outbox on a real (memory) bus; the user's
``not_before`` is kept in the database for gateways that missed the event; scopes reach
introspection; refresh families have an absolute lifetime; an admin can revoke a key.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from services.auth.models import RefreshToken, utcnow
from shared.bus.memory import MemoryBus
from shared.db import Database
from shared.events import Envelope, SessionsRevoked, parse_payload
from tests.unit.auth.conftest import PASSWORD, bearer, login, register


class Revocations:
    """The SessionsRevoked events seen on the bus by a broadcast subscriber."""

    def __init__(self) -> None:
        self.seen: list[SessionsRevoked] = []

    async def handle(self, envelope: Envelope) -> None:
        payload = parse_payload(envelope)
        assert isinstance(payload, SessionsRevoked)
        self.seen.append(payload)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[SessionsRevoked]:
        deadline = time.monotonic() + timeout
        while len(self.seen) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.seen) >= count, f"saw {len(self.seen)} SessionsRevoked, wanted {count}"
        return self.seen


@pytest.fixture
def on_bus(make_client: Callable[..., TestClient]) -> tuple[TestClient, Revocations]:
    """The auth app on a memory bus, with a broadcast subscriber like a gateway replica's."""
    bus = MemoryBus("memory://")
    seen = Revocations()
    client = make_client(bus=bus)
    client.portal.call(bus.subscribe_broadcast, [SessionsRevoked.event_type()], seen.handle)
    return client, seen


def _claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def _sessions(client: TestClient, user_id: str) -> Any:
    r = client.get(f"/internal/users/{user_id}/sessions")
    assert r.status_code == 200, r.text
    return r.json()["not_before"]


def test_logout_publishes_sessions_revoked_and_the_db_keeps_not_before(
    on_bus: tuple[TestClient, Revocations],
) -> None:
    client, seen = on_bus
    user = register(client, "leaver@example.com")
    assert _sessions(client, user["id"]) is None
    tokens = login(client, "leaver@example.com")
    old_iat = _claims(tokens["access_token"])["iat"]
    r = client.post("/api/auth/logout", headers=bearer(tokens["access_token"]))
    assert r.status_code == 204
    event = seen.wait_for(1)[0]
    assert (str(event.user_id), event.reason) == (user["id"], "logout")
    assert event.not_before.timestamp() > old_iat
    stored = _sessions(client, user["id"])
    assert stored is not None and abs(_ts(stored) - event.not_before.timestamp()) < 1e-3
    # a token issued after the revocation (same second even) is newer than not_before
    fresh = login(client, "leaver@example.com")["access_token"]
    assert _claims(fresh)["iat"] >= event.not_before.timestamp()
    body = client.post("/internal/introspect", json={"token": fresh}).json()
    assert _ts(body["not_before"]) == pytest.approx(event.not_before.timestamp(), abs=1e-3)


def _ts(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("action", ["password", "refresh_reuse", "logout_all", "admin", "disable"])
def test_every_revoking_action_publishes(
    on_bus: tuple[TestClient, Revocations], action: str
) -> None:
    client, seen = on_bus
    admin = login(client, register(client, "root@example.com")["email"])["access_token"]
    victim = register(client, "victim@example.com")
    tokens = login(client, "victim@example.com")
    headers = bearer(tokens["access_token"])
    if action == "password":
        body = {"current_password": PASSWORD, "new_password": "another-Quiet-harbour-7"}
        assert client.post("/api/auth/password", json=body, headers=headers).status_code == 200
        reason = "password_changed"
    elif action == "refresh_reuse":
        spent = tokens["refresh_token"]
        assert client.post("/api/auth/refresh", json={"refresh_token": spent}).status_code == 200
        r = client.post("/api/auth/refresh", json={"refresh_token": spent})
        assert r.status_code == 401
        reason = "refresh_reuse"
    elif action == "logout_all":
        assert client.post("/api/auth/logout-all", headers=headers).status_code == 204
        reason = "logout_all"
    elif action == "admin":
        r = client.post(
            f"/api/auth/admin/users/{victim['id']}/revoke-sessions", headers=bearer(admin)
        )
        assert r.status_code == 200, r.text
        reason = "admin"
    else:
        r = client.post(f"/api/auth/admin/users/{victim['id']}/disable", headers=bearer(admin))
        assert r.status_code == 200 and r.json()["disabled"] is True
        reason = "account_disabled"
        r = client.post(
            "/api/auth/login", json={"email": "victim@example.com", "password": PASSWORD}
        )
        assert r.status_code == 403
    event = seen.wait_for(1)[-1]
    assert (str(event.user_id), event.reason) == (victim["id"], reason)
    assert (
        client.post("/internal/introspect", json={"token": tokens["access_token"]}).status_code
        == 401
    )


def test_admin_actions_need_an_admin(client: TestClient) -> None:
    register(client, "first@example.com")
    someone = register(client, "someone@example.com")
    headers = bearer(login(client, "someone@example.com")["access_token"])
    for path in (
        f"/api/auth/admin/users/{someone['id']}/revoke-sessions",
        f"/api/auth/admin/users/{someone['id']}/disable",
        "/api/auth/admin/keys/20260101000000-abcdef01/revoke",
    ):
        assert client.post(path, headers=headers).status_code == 403
    assert client.post("/api/auth/admin/invitations", json={}, headers=headers).status_code == 403


def test_access_tokens_carry_iat_scope_and_exactly_the_ttl(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(access_token_ttl_seconds=600)
    register(client, "admin@example.com")
    register(client, "user@example.com")
    admin = _claims(login(client, "admin@example.com")["access_token"])
    user = _claims(login(client, "user@example.com")["access_token"])
    for claims in (admin, user):
        assert claims["exp"] - claims["iat"] == pytest.approx(600, abs=1e-3)
    assert admin["scope"].split() == ["read", "run", "deploy", "predict", "admin"]
    assert user["scope"].split() == ["read", "run", "deploy", "predict"]


def test_api_token_scopes(client: TestClient) -> None:
    register(client, "admin@example.com")
    register(client, "dev@example.com")
    dev = bearer(login(client, "dev@example.com")["access_token"])
    admin = bearer(login(client, "admin@example.com")["access_token"])

    default = client.post("/api/auth/tokens", json={"name": "ci"}, headers=dev).json()
    assert default["scopes"] == ["read"]  # a CI token is not a full account key by default
    r = client.post(
        "/api/auth/tokens", json={"name": "d", "scopes": ["deploy", "run"]}, headers=dev
    )
    assert r.status_code == 201 and r.json()["scopes"] == ["run", "deploy"]
    body = client.post("/internal/introspect", json={"token": r.json()["token"]}).json()
    assert body["scopes"] == ["run", "deploy"] and body["kind"] == "api"
    listed = {t["name"]: t["scopes"] for t in client.get("/api/auth/tokens", headers=dev).json()}
    assert listed == {"ci": ["read"], "d": ["run", "deploy"]}

    r = client.post("/api/auth/tokens", json={"name": "x", "scopes": ["admin"]}, headers=dev)
    assert r.status_code == 403 and "admin" in r.json()["error"]["message"]
    r = client.post("/api/auth/tokens", json={"name": "x", "scopes": ["root"]}, headers=dev)
    assert r.status_code == 422 and "unknown scope" in r.json()["error"]["message"]
    r = client.post("/api/auth/tokens", json={"name": "x", "scopes": []}, headers=dev)
    assert r.status_code == 422
    r = client.post("/api/auth/tokens", json={"name": "a", "scopes": ["admin"]}, headers=admin)
    assert r.status_code == 201
    body = client.post("/internal/introspect", json={"token": r.json()["token"]}).json()
    assert body["scopes"] == ["admin"]


def test_refresh_stops_at_the_absolute_session_lifetime(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = make_client(session_max_days=1)
    register(client, "long@example.com")
    tokens = login(client, "long@example.com")
    refreshed = client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    # the login happened 25 hours ago: sliding on by refreshing no longer works
    db = Database(f"sqlite:///{tmp_path / 'auth.db'}")
    with db.session() as session:
        session.execute(
            update(RefreshToken).values(family_started_at=utcnow() - timedelta(hours=25))
        )
        session.commit()
    db.dispose()
    r = client.post("/api/auth/refresh", json={"refresh_token": refreshed.json()["refresh_token"]})
    assert r.status_code == 401
    assert "log in again" in r.json()["error"]["message"]


def test_refresh_token_expiry_never_passes_the_session_lifetime(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = make_client(session_max_days=2, refresh_token_ttl_days=30)
    register(client, "bounded@example.com")
    login(client, "bounded@example.com")
    db = Database(f"sqlite:///{tmp_path / 'auth.db'}")
    with db.session() as session:
        row = session.query(RefreshToken).one()
        assert row.expires_at - row.created_at <= timedelta(days=2, seconds=1)
    db.dispose()


def test_admin_revokes_a_signing_key_at_once(client: TestClient) -> None:
    register(client, "keeper@example.com")
    tokens = login(client, "keeper@example.com")
    headers = bearer(tokens["access_token"])
    kid = jwt.get_unverified_header(tokens["access_token"])["kid"]
    r = client.post(f"/api/auth/admin/keys/{kid}/revoke", headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["revoked"] == kid and body["active"] != kid and kid not in body["keys"]
    assert kid not in [k["kid"] for k in client.get("/api/auth/jwks").json()["keys"]]
    # tokens it signed are dead; a new login is signed by the new key and works
    assert (
        client.post("/internal/introspect", json={"token": tokens["access_token"]}).status_code
        == 401
    )
    fresh = login(client, "keeper@example.com")["access_token"]
    assert jwt.get_unverified_header(fresh)["kid"] == body["active"]
    assert client.get("/api/auth/me", headers=bearer(fresh)).status_code == 200
    again = client.post(f"/api/auth/admin/keys/{kid}/revoke", headers=bearer(fresh))
    assert again.status_code == 404
    bad = client.post("/api/auth/admin/keys/not-a-kid/revoke", headers=bearer(fresh))
    assert bad.status_code == 422


def test_sessions_route_is_404_for_unknown_users(client: TestClient) -> None:
    assert client.get(f"/internal/users/{uuid.uuid4()}/sessions").status_code == 404
