"""Issue 13: a logout on auth reaches a gateway replica's broadcast subscription over real
RabbitMQ (outbox → relay → exchange), with auth on PostgreSQL and OpenBao."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.auth.main import create_app
from services.auth.settings import AuthSettings
from shared.bus import create_bus
from shared.events import Envelope, SessionsRevoked, parse_payload

pytestmark = pytest.mark.integration

PASSWORD = "correct-Horse-battery"


async def test_logout_publishes_sessions_revoked_on_rabbitmq(
    postgres_url: str, vault_client: Any, amqp_url: str, tmp_path: Path
) -> None:
    listener = create_bus(amqp_url)  # stands in for a gateway replica
    await listener.connect()
    seen: asyncio.Queue[SessionsRevoked] = asyncio.Queue()

    async def on_revoked(envelope: Envelope) -> None:
        payload = parse_payload(envelope)
        assert isinstance(payload, SessionsRevoked)
        await seen.put(payload)

    try:
        await listener.subscribe_broadcast([SessionsRevoked.event_type()], on_revoked)
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
