"""Issue 13: a logout on auth, and a signing key revoked by an admin, reach the other
replicas' broadcast subscriptions over real RabbitMQ (outbox → relay → exchange), with auth
on PostgreSQL and OpenBao."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, TypeVar

import httpx
import jwt
import pytest

from services.auth.main import create_app
from services.auth.settings import AuthSettings
from shared.bus import Bus, create_bus
from shared.events import (
    Envelope,
    EventPayload,
    SessionsRevoked,
    SigningKeyRevoked,
    parse_payload,
)

pytestmark = pytest.mark.integration

PASSWORD = "correct-Horse-battery"

Heard = TypeVar("Heard", bound=EventPayload)


async def _heard(listener: Bus, kind: type[Heard]) -> asyncio.Queue[Heard]:
    """Subscribe ``listener`` (a stand-in gateway replica) to ``kind``; what it hears."""
    seen: asyncio.Queue[Heard] = asyncio.Queue()

    async def on_event(envelope: Envelope) -> None:
        payload = parse_payload(envelope)
        assert isinstance(payload, kind)
        await seen.put(payload)

    await listener.subscribe_broadcast([kind.event_type()], on_event)
    return seen


async def test_logout_publishes_sessions_revoked_on_rabbitmq(
    postgres_url: str, vault_client: Any, amqp_url: str, tmp_path: Path
) -> None:
    listener = create_bus(amqp_url)  # stands in for a gateway replica
    await listener.connect()

    try:
        seen = await _heard(listener, SessionsRevoked)
        settings = AuthSettings(data_dir=tmp_path, database_url=postgres_url, bus_url=amqp_url)
        app = create_app(settings, vault=(vault_client, vault_client))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://auth") as client:
                creds = {"email": "mq@example.com", "password": PASSWORD}
                r = await client.post("/api/auth/register", json=creds)
                assert r.status_code == 201, r.text
                user_id = r.json()["id"]
                r = await client.post("/api/auth/login", json=creds)
                access = r.json()["access_token"]
                r = await client.post(
                    "/api/auth/logout", headers={"Authorization": f"Bearer {access}"}
                )
                assert r.status_code == 204
                event = await asyncio.wait_for(seen.get(), timeout=20)
        assert str(event.user_id) == user_id
        assert event.reason == "logout"
    finally:
        await listener.close()


async def test_a_revoked_signing_key_stops_verifying_on_every_replica_at_once(
    postgres_url: str, vault_client: Any, amqp_url: str, tmp_path: Path
) -> None:
    """Two auth replicas (one database, one Vault, one broker) that re-read the keyring only
    hourly: a key revoked on one is refused by the other within moments (the push), and a
    gateway replica's broadcast queue hears of it."""
    listener = create_bus(amqp_url)  # stands in for a gateway replica
    await listener.connect()

    def replica(name: str) -> Any:
        settings = AuthSettings(
            data_dir=tmp_path / name,
            database_url=postgres_url,
            bus_url=amqp_url,
            keyring_reload_seconds=3600,
        )
        return create_app(settings, vault=(vault_client, vault_client))

    a, b = replica("a"), replica("b")
    try:
        seen = await _heard(listener, SigningKeyRevoked)
        async with (
            a.router.lifespan_context(a),
            b.router.lifespan_context(b),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://a") as ca,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=b), base_url="http://b") as cb,
        ):
            creds = {"email": "keys@example.com", "password": PASSWORD}
            assert (await ca.post("/api/auth/register", json=creds)).status_code == 201
            access = (await ca.post("/api/auth/login", json=creds)).json()["access_token"]
            bearer = {"Authorization": f"Bearer {access}"}
            kid = jwt.get_unverified_header(access)["kid"]
            assert (await cb.get("/api/auth/me", headers=bearer)).status_code == 200
            r = await ca.post(f"/api/auth/admin/keys/{kid}/revoke", headers=bearer)
            assert r.status_code == 200, r.text
            event = await asyncio.wait_for(seen.get(), timeout=20)
            assert event.kid == kid
            deadline = asyncio.get_running_loop().time() + 10
            while (await cb.get("/api/auth/me", headers=bearer)).status_code != 401:
                assert asyncio.get_running_loop().time() < deadline, "replica b still trusts it"
                await asyncio.sleep(0.1)
            assert kid not in [k["kid"] for k in (await cb.get("/api/auth/jwks")).json()["keys"]]
            # b signs with the key a made to replace it, and a accepts b's tokens
            fresh = (await cb.post("/api/auth/login", json=creds)).json()["access_token"]
            assert jwt.get_unverified_header(fresh)["kid"] == r.json()["active"]
            me = await ca.get("/api/auth/me", headers={"Authorization": f"Bearer {fresh}"})
            assert me.status_code == 200
    finally:
        await listener.close()
