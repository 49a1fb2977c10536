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
    # a split deployment is distributed mode: the gateway processes call auth's internal API
    # with service tokens signed by their Vault transit key, which auth verifies
    settings = auth_settings(tmp_path, postgres_url, amqp_url)
    settings = settings.model_copy(update={"mode": "distributed"})
    auth_app = create_auth_app(settings, vault=(vault_client, vault_client))
    with server_thread(auth_app) as auth_url, ExitStack() as stack:
        urls = [  # one after the other: the first one migrates the database
            stack.enter_context(
                gateway_process(
                    tmp_path,
                    postgres_url=postgres_url,
                    amqp_url=amqp_url,
                    auth_url=auth_url,
                    bao=bao_server,
                    env={"AIDP_MODE": "distributed"},
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
        for i in range(2):
            r = await http.post(
                f"{gw_a}/api/projects", json={"name": f"p{i}", "spec": SPEC}, headers=headers
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


async def _closed_with(ws: Any, *, within: float) -> int | None:
    """The close code the server sends within ``within`` seconds (pings skipped)."""
    try:
        async with asyncio.timeout(within):
            while True:
                await ws.recv()
    except websockets.ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None


async def test_logout_on_one_replica_kills_the_token_and_socket_on_the_other(
    two_gateways: tuple[str, str],
) -> None:
    """Issue 13: SessionsRevoked reaches every replica (its own broadcast queue)."""
    gw_a, gw_b = two_gateways
    token = await asyncio.to_thread(_login, gw_a)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(
            f"{gw_b}/api/projects", json={"name": "p", "spec": SPEC}, headers=headers
        )
        assert r.status_code == 201, r.text
        project_id = r.json()["id"]
        assert (await http.get(f"{gw_b}/api/secrets", headers=headers)).status_code == 200
        ws = await websockets.connect(gw_b.replace("http", "ws") + "/api/ws")
        await ws.send(json.dumps({"type": "auth", "token": token}))
        await ws.send(json.dumps({"type": "subscribe", "project_id": project_id, "after": 0}))
        assert json.loads(await ws.recv())["type"] == "authenticated"

        r = await http.post(f"{gw_a}/api/auth/logout", headers=headers)
        assert r.status_code == 204, r.text
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await _closed_with(ws, within=1.0) == 4401
        while (await http.get(f"{gw_b}/api/projects", headers=headers)).status_code != 401:
            assert loop.time() - started < 1.0, "replica 2 still accepts the logged-out token"
            await asyncio.sleep(0.05)
        for path in ("/api/projects", "/api/secrets", f"/api/projects/{project_id}"):
            assert (await http.get(f"{gw_b}{path}", headers=headers)).status_code == 401, path


async def test_a_removed_members_socket_on_another_replica_closes_4403(
    two_gateways: tuple[str, str],
) -> None:
    """Issue 13: MembershipChanged from replica 1's member route closes replica 2's socket."""
    gw_a, gw_b = two_gateways
    # One after the other: on loopback the first account registered becomes the platform
    # admin, who sees every project; the member must not be it.
    owner = await asyncio.to_thread(_login, gw_a)
    member = await asyncio.to_thread(_login, gw_a)
    owner_h = {"Authorization": f"Bearer {owner}"}
    member_h = {"Authorization": f"Bearer {member}"}
    async with httpx.AsyncClient(timeout=30) as http:
        me = (await http.get(f"{gw_a}/api/auth/me", headers=member_h)).json()
        r = await http.post(
            f"{gw_a}/api/projects", json={"name": "p", "spec": SPEC}, headers=owner_h
        )
        project_id = r.json()["id"]
        r = await http.post(
            f"{gw_a}/api/projects/{project_id}/members",
            json={"email": me["email"], "role": "viewer"},
            headers=owner_h,
        )
        assert r.status_code == 202 and r.json()["status"] == "invited", r.text
        assert (
            await http.get(f"{gw_b}/api/projects/{project_id}", headers=member_h)
        ).status_code == 404
        r = await http.post(f"{gw_b}/api/invitations/{r.json()['id']}/accept", headers=member_h)
        assert r.status_code == 200, r.text

        ws = await websockets.connect(gw_b.replace("http", "ws") + "/api/ws")
        await ws.send(json.dumps({"type": "auth", "token": member}))
        await ws.send(json.dumps({"type": "subscribe", "project_id": project_id, "after": 0}))
        assert json.loads(await ws.recv())["type"] == "authenticated"
        while json.loads(await ws.recv())["type"] != "subscribed":
            pass
        r = await http.delete(
            f"{gw_a}/api/projects/{project_id}/members/{me['id']}", headers=owner_h
        )
        assert r.status_code == 204, r.text
        assert await _closed_with(ws, within=1.0) == 4403
