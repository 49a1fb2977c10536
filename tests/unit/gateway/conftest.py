"""Fixtures of the gateway unit tests: SQLite, the memory bus, an in-memory vault and an
auth stand-in registered in process (``inproc://``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from services.gateway.main import create_app
from services.gateway.settings import GatewaySettings
from shared.bus.memory import MemoryBus
from shared.events import Envelope
from shared.internal import register_inproc, unregister_inproc
from shared.secrets import InMemoryVault
from tests.support.infra import free_port
from tests.unit.gateway.authstub import AuthStub

SPEC: dict[str, Any] = {
    "name": "demo",
    "model": "hf://sentence-transformers/all-MiniLM-L6-v2@main",
    "dataset": "hf://datasets/stanfordnlp/imdb@main",
    "task": "text-classification",
}


@pytest.fixture
def auth() -> Iterator[AuthStub]:
    stub = AuthStub()
    name = f"auth-{uuid.uuid4().hex[:8]}"
    register_inproc(name, stub.app)
    stub.url = f"inproc://{name}"  # type: ignore[attr-defined]
    yield stub
    unregister_inproc(name)


def gateway_settings(tmp_path: Path, auth_url: str, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "database_url": f"sqlite:///{tmp_path / 'gateway.db'}",
        "bus_url": "memory://",
        "auth_url": auth_url,
        "fetcher_url": "inproc://no-fetcher",
        "trainer_url": "inproc://no-trainer",
        "provisioner_url": "inproc://no-provisioner",
        "web_dist": tmp_path / "no-web",
        "ws_poll_interval": 0.05,
        "jwks_refresh_seconds": 0.0,
    }
    values.update(overrides)
    return GatewaySettings(**values)


@dataclass
class Harness:
    app: FastAPI
    client: httpx.AsyncClient
    auth: AuthStub
    vault: InMemoryVault
    publisher: MemoryBus
    #: projects created per caller: names are unique per owner ("p", then "p-2", …)
    created: dict[str, int] = field(default_factory=dict)

    def login(
        self, email: str | None = None, *, admin: bool = False
    ) -> tuple[uuid.UUID, dict[str, str]]:
        user_id, email = self.auth.user(email)
        token = self.auth.token(user_id, email, admin=admin)
        return user_id, {"Authorization": f"Bearer {token}"}

    async def create_project(self, headers: dict[str, str], **spec: Any) -> dict[str, Any]:
        caller = headers.get("Authorization", "")
        n = self.created[caller] = self.created.get(caller, 0) + 1
        name = "p" if n == 1 else f"p-{n}"
        response = await self.client.post(
            "/api/projects", json={"name": name, "spec": {**SPEC, **spec}}, headers=headers
        )
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    async def publish(self, envelope: Envelope) -> None:
        await self.publisher.publish(envelope)

    async def add_member(
        self, project_id: str, owner: dict[str, str], email: str, role: str
    ) -> None:
        """Invite ``email`` (owner) and accept as that user: member-add is an invitation."""
        r = await self.client.post(
            f"/api/projects/{project_id}/members",
            json={"email": email, "role": role},
            headers=owner,
        )
        assert r.status_code in (200, 202), r.text
        if r.status_code == 202:
            _, invitee = self.login(email)
            accepted = await self.client.post(
                f"/api/invitations/{r.json()['id']}/accept", headers=invitee
            )
            assert accepted.status_code == 200, accepted.text


async def wait_until(predicate: Callable[[], Any], *, timeout: float = 15.0) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def harness(tmp_path: Path, auth: AuthStub) -> AsyncIterator[Harness]:
    vault = InMemoryVault()
    app = create_app(gateway_settings(tmp_path, auth.url), vault=(vault, vault))  # type: ignore[attr-defined]
    publisher = MemoryBus("memory://")
    await publisher.connect()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield Harness(app, client, auth, vault, publisher)
    await publisher.close()


@asynccontextmanager
async def serve(app: FastAPI, **options: Any) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn on a free port (lifespan included); yields its URL.

    ``options``: more ``uvicorn.Config`` arguments (``ssl_certfile``...)."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", **options
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started or task.done(), timeout=15)
    if task.done():
        task.result()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@dataclass
class Served(Harness):
    url: str = ""

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/api/ws"


@pytest.fixture
async def served(tmp_path: Path, auth: AuthStub) -> AsyncIterator[Served]:
    """The gateway behind a real HTTP/WebSocket server."""
    vault = InMemoryVault()
    settings = gateway_settings(tmp_path, auth.url, ws_ping_interval=0.5)  # type: ignore[attr-defined]
    app = create_app(settings, vault=(vault, vault))
    publisher = MemoryBus("memory://")
    await publisher.connect()
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        yield Served(app, client, auth, vault, publisher, url=url)
    await publisher.close()
