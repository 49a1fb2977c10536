"""The WebSocket status stream (docs/design.md §6)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import uuid

import pytest
import websockets

from shared.events import TrainingLog, TrainingProgress, new_event
from tests.unit.gateway import wsclient
from tests.unit.gateway.conftest import Served, wait_until

pytestmark = pytest.mark.timeout(120)


def _token(served: Served, email: str | None = None) -> tuple[str, dict[str, str]]:
    user_id, email = served.auth.user(email)
    token = served.auth.token(user_id, email)
    return token, {"Authorization": f"Bearer {token}"}


async def _progress(served: Served, project: dict[str, str], steps: range) -> None:
    pid, rid = uuid.UUID(project["id"]), uuid.UUID(project["current_run_id"])
    for step in steps:
        await served.publish(new_event(TrainingProgress(step=step), project_id=pid, run_id=rid))


async def test_first_message_must_authenticate(served: Served) -> None:
    ws = await wsclient.connect(served.ws_url)
    await ws.send(json.dumps({"type": "subscribe", "project_id": str(uuid.uuid4())}))
    assert await wsclient.close_code(ws) == 4401

    ws = await wsclient.connect(served.ws_url)
    await ws.send(json.dumps({"type": "auth", "token": "nope"}))
    assert await wsclient.close_code(ws) == 4401


async def test_auth_timeout_closes_4401(served: Served) -> None:
    served.app.state.gateway.settings.ws_auth_timeout = 0.2
    ws = await wsclient.connect(served.ws_url)
    assert await wsclient.close_code(ws, timeout=5) == 4401


async def test_malformed_messages_close_1002(served: Served) -> None:
    token, _ = _token(served)
    for bad in (
        "{nope",
        "[1]",
        json.dumps({"type": "dance"}),
        json.dumps({"type": "subscribe", "project_id": "x"}),
        json.dumps({"type": "subscribe", "project_id": str(uuid.uuid4()), "after": -1}),
    ):
        ws = await wsclient.authed(served.ws_url, token)
        await ws.send(bad)
        assert await wsclient.close_code(ws) == 1002, bad
    ws = await wsclient.connect(served.ws_url)
    await ws.send("{nope")
    assert await wsclient.close_code(ws) == 1002


async def test_unauthorised_subscription_closes_4403(served: Served) -> None:
    _, owner = _token(served)
    project = await served.create_project(owner)
    stranger, _ = _token(served)
    ws = await wsclient.authed(served.ws_url, stranger)
    await ws.send(json.dumps({"type": "subscribe", "project_id": project["id"], "after": 0}))
    assert await wsclient.close_code(ws) == 4403
    ws = await wsclient.authed(served.ws_url, stranger)
    await ws.send(json.dumps({"type": "subscribe", "project_id": str(uuid.uuid4()), "after": 0}))
    assert await wsclient.close_code(ws) == 4403


async def test_origin_allow_list_checked_before_accept(served: Served) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        await wsclient.connect(served.ws_url, origin="https://evil.example")
    assert refused.value.response.status_code == 403
    host = served.url.removeprefix("http://")
    ws = await wsclient.connect(served.ws_url, origin=f"http://{host}")  # same origin
    await ws.close()
    served.app.state.gateway.settings.ws_allowed_origins = ["https://ui.example"]
    ws = await wsclient.connect(served.ws_url, origin="https://ui.example")
    await ws.close()


async def test_backfill_then_live_without_gap_or_duplicate(served: Served) -> None:
    token, headers = _token(served)
    project = await served.create_project(headers)
    db = served.app.state.runtime.db
    from services.gateway.eventlog import latest_seqs

    pid = uuid.UUID(project["id"])
    # ProjectCreated (seq 1) goes through the outbox; a trainer's progress only ever
    # follows it, so the test's direct publishes do too
    await wait_until(lambda: latest_seqs(db, [pid]).get(pid) == 1)
    await _progress(served, project, range(1, 21))  # seqs 2..21 (1 is ProjectCreated)
    await wait_until(lambda: latest_seqs(db, [pid]).get(pid) == 21)

    ws = await wsclient.authed(served.ws_url, token)
    latest = await wsclient.subscribe(ws, project["id"], after=5)
    assert latest == 21
    # live events published while the backfill is being sent
    publishing = asyncio.create_task(_progress(served, project, range(21, 61)))  # seqs 22..61
    frames = await wsclient.events(ws, 56)
    await publishing
    assert [f["seq"] for f in frames] == list(range(6, 62))
    steps = [f["event"]["payload"]["step"] for f in frames]
    assert steps == list(range(5, 61))
    assert all(f["event"]["project_id"] == project["id"] for f in frames)
    await ws.close()

    # reconnect with after: the rest, nothing twice
    await _progress(served, project, range(61, 66))
    ws = await wsclient.authed(served.ws_url, token)
    await wsclient.subscribe(ws, project["id"], after=61)
    frames = await wsclient.events(ws, 5)
    assert [f["seq"] for f in frames] == list(range(62, 67))
    await ws.close()


async def test_events_of_other_processes_arrive_by_polling(served: Served) -> None:
    """An event stored by another gateway process (not dispatched here) still arrives."""
    from services.gateway.eventlog import append

    token, headers = _token(served)
    project = await served.create_project(headers)
    ws = await wsclient.authed(served.ws_url, token)
    await wsclient.subscribe(ws, project["id"], after=0)
    await wsclient.events(ws, 1)  # ProjectCreated (seq 1)
    envelope = new_event(
        TrainingProgress(step=1),
        project_id=uuid.UUID(project["id"]),
        run_id=uuid.UUID(project["current_run_id"]),
    )
    frame = await asyncio.to_thread(append, served.app.state.runtime.db, envelope)
    assert frame is not None and frame.seq == 2
    [got] = await wsclient.events(ws, 1, timeout=5)
    assert got["seq"] == 2 and got["event"]["id"] == str(envelope.id)
    await ws.close()


async def test_server_pings(served: Served) -> None:
    token, _ = _token(served)
    ws = await wsclient.authed(served.ws_url, token)
    async with asyncio.timeout(5):
        assert json.loads(await ws.recv()) == {"type": "ping"}
    await ws.send(json.dumps({"type": "pong"}))
    await ws.close()


async def test_slow_client_is_dropped_without_stalling_others(served: Served) -> None:
    served.app.state.gateway.settings.ws_send_timeout = 0.5
    token, headers = _token(served)
    project = await served.create_project(headers)
    pid, rid = uuid.UUID(project["id"]), uuid.UUID(project["current_run_id"])
    # seq 1 (the project's creation) is stored before anyone subscribes "after 1": a
    # subscription ahead of the log is clamped to what is stored, and would get seq 1
    probe = await wsclient.authed(served.ws_url, token)
    await wsclient.subscribe(probe, project["id"])
    assert (await wsclient.events(probe, 1))[0]["seq"] == 1
    await probe.close()
    # the slow client stops reading (a raw socket with a tiny receive buffer)
    # (blocking socket calls run in a thread: the server shares this event loop)
    slow = await asyncio.to_thread(_RawClient, served.url)
    await asyncio.to_thread(slow.send, {"type": "auth", "token": token})
    await asyncio.to_thread(
        slow.send, {"type": "subscribe", "project_id": project["id"], "after": 1}
    )
    fast = await websockets.connect(served.ws_url, max_size=None)
    await fast.send(json.dumps({"type": "auth", "token": token}))
    await fast.recv()
    await wsclient.subscribe(fast, project["id"], after=1)
    reader = asyncio.create_task(wsclient.events(fast, 1000, timeout=60))
    big = ["x" * 16_384]
    for _ in range(1000):  # 16 MB: more than the socket buffers and the queue hold
        await served.publish(
            new_event(TrainingLog(node="n", lines=big), project_id=pid, run_id=rid)
        )
    frames = await reader
    assert [f["seq"] for f in frames] == list(range(2, 1002))
    hub = served.app.state.gateway.hub
    await wait_until(lambda: hub.connections == 1, timeout=10)
    await fast.close()
    slow.sock.close()


class _RawClient:
    """A WebSocket client on a blocking socket that never reads after the handshake."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # no autotuning
        self.sock.settimeout(10)
        self.sock.connect((host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /api/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(1)
        assert b" 101 " in response.split(b"\r\n")[0], response

    def send(self, message: dict[str, object]) -> None:
        data = json.dumps(message).encode()
        mask = os.urandom(4)
        header = (
            bytes([0x81, 0x80 | 126]) + struct.pack("!H", len(data))
            if len(data) > 125
            else bytes([0x81, 0x80 | len(data)])
        )
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(header + mask + masked)


async def test_connection_drops_itself_when_its_queue_is_full() -> None:
    """The mechanism, without sockets: a sender stuck on one frame; offers overflow."""
    from services.gateway.eventlog import Frame
    from services.gateway.fanout import Connection, Subscription

    closed: list[int] = []
    stuck = asyncio.Event()

    async def send(_text: str) -> None:
        await stuck.wait()

    async def close(code: int) -> None:
        closed.append(code)

    conn = Connection(send=send, close=close, db=None, queue_size=3, ping_interval=60)  # type: ignore[arg-type]
    pid = uuid.uuid4()
    sub = Subscription(project_id=pid, last_sent=0, pending=None)
    conn.subs[pid] = sub
    conn.start()
    for seq in range(1, 10):
        conn.deliver(Frame(pid, seq, f"frame {seq}"))
        await asyncio.sleep(0)
    await conn.stop()
    assert conn.dropped and closed == [1013]


async def test_several_subscriptions_on_one_connection(served: Served) -> None:
    token, headers = _token(served)
    a = await served.create_project(headers)
    b = await served.create_project(headers)
    ws = await wsclient.authed(served.ws_url, token)
    for project in (a, b):
        await ws.send(json.dumps({"type": "subscribe", "project_id": project["id"], "after": 0}))
    await _progress(served, a, range(3))
    await _progress(served, b, range(3))
    per: dict[str, list[int]] = {a["id"]: [], b["id"]: []}
    subscribed = 0
    async with asyncio.timeout(10):
        while sum(map(len, per.values())) < 8:
            message = json.loads(await ws.recv())
            if message["type"] == "subscribed":
                subscribed += 1
            elif message["type"] == "event":
                per[message["event"]["project_id"]].append(message["seq"])
    assert subscribed == 2
    assert per == {a["id"]: [1, 2, 3, 4], b["id"]: [1, 2, 3, 4]}
    await ws.close()
