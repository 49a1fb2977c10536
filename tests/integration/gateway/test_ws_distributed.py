"""WebSocket streams served by two gateway processes at once, on RabbitMQ + PostgreSQL:
50 clients on two projects each receive exactly their project's events, in order, and
the rest after a reconnect with ``after`` — no gap, no duplicate. Also the refusals."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from services.auth.main import create_app as create_auth_app
from shared.events import TrainingProgress, new_event
from tests.integration.gateway.conftest import (
    PASSWORD,
    SPEC,
    auth_settings,
    gateway_process,
    publish_all,
    server_thread,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def two_gateways(
    tmp_path: Path, postgres_url: str, amqp_url: str, bao_server: tuple[str, str], vault_client: Any
) -> Iterator[tuple[str, str]]:
    auth_app = create_auth_app(
        auth_settings(tmp_path, postgres_url, amqp_url), vault=(vault_client, vault_client)
    )
    with server_thread(auth_app) as auth_url, ExitStack() as stack:
        urls = [  # one after the other: the first one migrates the database
            stack.enter_context(
                gateway_process(
                    tmp_path,
                    postgres_url=postgres_url,
                    amqp_url=amqp_url,
                    auth_url=auth_url,
                    bao=bao_server,
                )
            )
            for _ in range(2)
        ]
        yield urls[0], urls[1]


def _login(url: str) -> str:
    email = f"u{uuid.uuid4().hex[:10]}@example.com"
    with httpx.Client(base_url=url, timeout=30) as c:
        assert (
            c.post("/api/auth/register", json={"email": email, "password": PASSWORD}).status_code
            == 201
        )
        return str(
            c.post("/api/auth/login", json={"email": email, "password": PASSWORD}).json()[
                "access_token"
            ]
        )


class Client:
    def __init__(self, url: str, token: str, project_id: str) -> None:
        self.url, self.token, self.project_id = url, token, project_id
        self.seqs: list[int] = []
        self.foreign = 0
        self.ws: Any = None

    async def start(self, after: int = 0) -> None:
        self.ws = await websockets.connect(
            self.url.replace("http", "ws") + "/api/ws", max_queue=None
        )
        await self.ws.send(json.dumps({"type": "auth", "token": self.token}))
        await self.ws.send(
            json.dumps({"type": "subscribe", "project_id": self.project_id, "after": after})
        )

    async def read_until(self, last_seq: int) -> None:
        while not self.seqs or self.seqs[-1] < last_seq:
            message = json.loads(await self.ws.recv())
            if message["type"] == "event":
                if message["event"]["project_id"] != self.project_id:
                    self.foreign += 1
                self.seqs.append(message["seq"])


async def test_fifty_clients_two_processes_reconnect(
    two_gateways: tuple[str, str], amqp_url: str
) -> None:
    gw_a, gw_b = two_gateways
    token = await asyncio.to_thread(_login, gw_a)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=30) as http:
        projects = []
        for _ in range(2):
            r = await http.post(
                f"{gw_a}/api/projects", json={"name": "p", "spec": SPEC}, headers=headers
            )
            assert r.status_code == 201, r.text
            projects.append(r.json())
    clients = [
        Client(gw_a if i % 2 else gw_b, token, projects[(i // 2) % 2]["id"]) for i in range(50)
    ]
    await asyncio.gather(*(c.start() for c in clients))
    per_project = 50
    envelopes = []
    for step in range(per_project):
        for project in projects:
            envelopes.append(
                new_event(
                    TrainingProgress(step=step),
                    project_id=uuid.UUID(project["id"]),
                    run_id=uuid.UUID(project["current_run_id"]),
                )
            )
    await publish_all(amqp_url, envelopes)
    last = 1 + per_project  # ProjectCreated is seq 1
    async with asyncio.timeout(120):
        await asyncio.gather(*(c.read_until(last) for c in clients))
    for c in clients:
        assert c.seqs == list(range(1, last + 1)) and c.foreign == 0
    for c in clients:
        await c.ws.close()

    # reconnect with `after` (on the other process), while more events arrive
    again = [Client(gw_b if i % 2 else gw_a, token, projects[i % 2]["id"]) for i in range(10)]
    await asyncio.gather(*(c.start(after=30) for c in again))
    more = [
        new_event(
            TrainingProgress(step=100 + s),
            project_id=uuid.UUID(p["id"]),
            run_id=uuid.UUID(p["current_run_id"]),
        )
        for s in range(10)
        for p in projects
    ]
    await publish_all(amqp_url, more)
    async with asyncio.timeout(60):
        await asyncio.gather(*(c.read_until(last + 10) for c in again))
    for c in again:
        assert c.seqs == list(range(31, last + 11)) and c.foreign == 0
        await c.ws.close()


async def test_refusals(two_gateways: tuple[str, str]) -> None:
    gw, _ = two_gateways
    ws_url = gw.replace("http", "ws") + "/api/ws"
    owner = await asyncio.to_thread(_login, gw)
    stranger = await asyncio.to_thread(_login, gw)
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(
            f"{gw}/api/projects",
            json={"name": "p", "spec": SPEC},
            headers={"Authorization": f"Bearer {owner}"},
        )
        project_id = r.json()["id"]

    async def close_code(first: str, second: str | None = None) -> int | None:
        async with websockets.connect(ws_url) as ws:
            await ws.send(first)
            if second is not None:
                await ws.recv()  # authenticated
                await ws.send(second)
            try:
                async with asyncio.timeout(10):
                    while True:
                        await ws.recv()
            except websockets.ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd else None

    assert await close_code(json.dumps({"type": "auth", "token": "x.y.z"})) == 4401
    auth = json.dumps({"type": "auth", "token": stranger})
    sub = json.dumps({"type": "subscribe", "project_id": project_id, "after": 0})
    assert await close_code(auth, sub) == 4403
    assert await close_code(auth, "not json") == 1002
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(ws_url, additional_headers={"Origin": "https://evil.example"})
