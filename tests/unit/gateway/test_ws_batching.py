"""The status stream's send path at volume (issue 14 item 1): batch messages for clients
that ask, TrainingProgress coalescing per run, awaited sends with a stall watchdog."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import websockets
from fastapi import FastAPI, WebSocket

from services.embedded import gateway_ws_deflate
from services.gateway.eventlog import Frame, frame_text
from services.gateway.fanout import Connection, Hub, Subscription, batch_text
from services.gateway.settings import GatewaySettings
from shared.events import TrainingLog, TrainingProgress, new_event
from tests.unit.gateway import wsclient
from tests.unit.gateway.conftest import Served, serve

pytestmark = pytest.mark.timeout(120)

PROGRESS = TrainingProgress.event_type()
LOG = TrainingLog.event_type()


def _frame(pid: uuid.UUID, seq: int, kind: str = PROGRESS, run: uuid.UUID | None = None) -> Frame:
    body = json.dumps({"type": kind, "run_id": str(run) if run else None, "n": seq})
    return Frame(pid, seq, frame_text(seq, body), kind, run)


class Recorder:
    """A client socket: records what the sender sends; ``gate`` holds sends back."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.closed: list[int] = []

    async def send(self, text: str) -> None:
        await self.gate.wait()
        self.sent.append(text)

    async def close(self, code: int) -> None:
        self.closed.append(code)

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(t) for t in self.sent if json.loads(t)["type"] != "ping"]

    def seqs(self) -> list[int]:
        out: list[int] = []
        for message in self.messages():
            frames = message["frames"] if message["type"] == "batch" else [message]
            out += [f["seq"] for f in frames if f["type"] == "event"]
        return out


def _connection(client: Recorder, *, queue_size: int = 100) -> Connection:
    # no database: a catch-up from the log would fail the test
    return Connection(
        send=client.send,
        close=client.close,
        db=None,  # type: ignore[arg-type]
        queue_size=queue_size,
        ping_interval=60,
    )


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_queued_frames_go_out_as_one_batch_only_for_clients_that_ask() -> None:
    pid = uuid.uuid4()
    for batch in (True, False):
        client = Recorder()
        conn = _connection(client)
        conn.batch = batch
        conn.subs[pid] = Subscription(project_id=pid, last_sent=0, pending=None)
        conn.deliver_many(pid, [_frame(pid, seq) for seq in range(1, 6)])
        conn.start()
        await _settle()
        await conn.stop()
        assert client.seqs() == [1, 2, 3, 4, 5]
        if batch:  # one message, the frames exactly as they would be sent one by one
            assert client.sent == [batch_text([_frame(pid, s).text for s in range(1, 6)])]
        else:
            assert client.sent == [_frame(pid, s).text for s in range(1, 6)]
    single = Recorder()
    conn = _connection(single)
    conn.batch = True
    conn.subs[pid] = Subscription(project_id=pid, last_sent=0, pending=None)
    conn.start()
    conn.deliver(_frame(pid, 1))
    await _settle()
    await conn.stop()
    assert single.sent == [_frame(pid, 1).text]  # nothing to batch: the bare frame


async def test_coalescing_keeps_the_latest_queued_progress_of_each_run_in_order() -> None:
    pid, run_a, run_b = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    client = Recorder()
    client.gate.clear()  # the socket is busy: frames pile up in the queue
    conn = _connection(client)
    sub = Subscription(project_id=pid, last_sent=0, pending=None, coalesce=True)
    conn.subs[pid] = sub
    conn.start()
    conn.deliver(_frame(pid, 1, run=run_a))  # taken by the sender, stuck in the send
    await _settle()
    frames = [
        _frame(pid, 2, run=run_a),
        _frame(pid, 3, run=run_b),
        _frame(pid, 4, LOG, run=run_a),  # not progress: always sent
        _frame(pid, 5, run=run_a),
        _frame(pid, 6, run=run_b),
        _frame(pid, 7, run=run_a),
    ]
    conn.deliver_many(pid, frames)
    assert conn.queued == 3  # 4 (log), 6 (latest of b), 7 (latest of a)
    conn.deliver(_frame(pid, 7, run=run_a))  # a duplicate (the poller) changes nothing
    conn.deliver(_frame(pid, 5, run=run_a))  # nor does an older one
    assert conn.queued == 3
    client.gate.set()
    await _settle()
    await conn.stop()
    assert client.seqs() == [1, 4, 6, 7]  # no catch-up for the skipped seqs (no database)
    assert sub.last_sent == 7 and not sub.progress


async def test_without_coalescing_every_progress_is_sent() -> None:
    pid, run = uuid.uuid4(), uuid.uuid4()
    client = Recorder()
    client.gate.clear()
    conn = _connection(client)
    conn.subs[pid] = Subscription(project_id=pid, last_sent=0, pending=None)
    conn.start()
    conn.deliver_many(pid, [_frame(pid, seq, run=run) for seq in range(1, 8)])
    client.gate.set()
    await _settle()
    await conn.stop()
    assert client.seqs() == list(range(1, 8))


async def test_a_stalled_send_is_dropped_by_the_hub_with_1013() -> None:
    pid = uuid.uuid4()
    client = Recorder()
    client.gate.clear()  # the client never takes the send
    hub = Hub(None, poll_interval=1)  # type: ignore[arg-type]
    conn = Connection(
        send=client.send,
        close=client.close,
        db=None,  # type: ignore[arg-type]
        queue_size=100,
        ping_interval=60,
        send_timeout=0.2,
        on_drop=hub.unwatch_all,  # as the WebSocket route wires it
    )
    conn.subs[pid] = Subscription(project_id=pid, last_sent=0, pending=None)
    hub.watch(conn, pid)
    conn.start()
    conn.deliver(_frame(pid, 1))
    await _settle()
    assert conn.sending_since is not None and hub.drop_stalled() == 0  # waiting, not stalled
    await asyncio.sleep(0.3)
    assert hub.drop_stalled() == 1
    await conn.stop()
    assert client.closed == [1013] and hub.connections == 0


async def test_hub_hands_a_loop_turn_of_frames_on_at_once() -> None:
    pid = uuid.uuid4()
    client = Recorder()
    conn = _connection(client)
    conn.batch = True
    conn.subs[pid] = Subscription(project_id=pid, last_sent=0, pending=None)
    hub = Hub(None, poll_interval=1)  # type: ignore[arg-type]
    hub.watch(conn, pid)
    conn.start()
    for seq in range(1, 11):  # as the writer does after one group commit
        hub.dispatch(_frame(pid, seq))
    assert conn.queued == 0  # collected, handed on at the end of the loop turn
    await _settle()
    await conn.stop()
    assert len(client.sent) == 1 and client.seqs() == list(range(1, 11))


# -- over a real socket -----------------------------------------------------------------


def _token(served: Served) -> tuple[str, dict[str, str]]:
    user_id, email = served.auth.user()
    token = served.auth.token(user_id, email)
    return token, {"Authorization": f"Bearer {token}"}


async def _read_events(ws: wsclient.ClientConnection, count: int) -> tuple[list[int], int]:
    """Seqs of the next ``count`` events, and how many batch messages carried them."""
    seqs: list[int] = []
    batches = 0
    async with asyncio.timeout(20):
        while len(seqs) < count:
            message = json.loads(await ws.recv())
            frames = [message]
            if message["type"] == "batch":
                batches += 1
                frames = message["frames"]
            seqs += [f["seq"] for f in frames if f["type"] == "event"]
    return seqs, batches


async def test_batch_and_plain_clients_side_by_side(served: Served) -> None:
    token, headers = _token(served)
    project = await served.create_project(headers)
    pid, rid = uuid.UUID(project["id"]), uuid.UUID(project["current_run_id"])
    plain = await wsclient.authed(served.ws_url, token)
    await wsclient.subscribe(plain, project["id"], after=0)
    batched = await wsclient.authed(served.ws_url, token)
    await batched.send(
        json.dumps({"type": "subscribe", "project_id": project["id"], "after": 0, "batch": True})
    )
    for step in range(200):
        await served.publish(new_event(TrainingProgress(step=step), project_id=pid, run_id=rid))
    seqs, batches = await _read_events(batched, 201)
    assert seqs == list(range(1, 202)) and batches >= 1
    seqs, batches = await _read_events(plain, 201)
    assert seqs == list(range(1, 202)) and batches == 0
    await plain.close()
    await batched.close()


async def test_subscribe_options_must_be_booleans(served: Served) -> None:
    token, headers = _token(served)
    project = await served.create_project(headers)
    for name in ("batch", "coalesce"):
        ws = await wsclient.authed(served.ws_url, token)
        await ws.send(json.dumps({"type": "subscribe", "project_id": project["id"], name: 1}))
        assert await wsclient.close_code(ws) == 1002


async def test_shared_runs_built_once_and_overlaps_sent_once() -> None:
    """Every batch client gets the same message object for a loop turn's frames; a later
    turn overlapping what was sent (the poller after the writer) adds only the new seqs."""
    pid = uuid.uuid4()
    hub = Hub(None, poll_interval=1)  # type: ignore[arg-type]
    clients = [Recorder(), Recorder()]
    conns = []
    for client in clients:
        conn = _connection(client)
        conn.batch = True
        conn.subs[pid] = Subscription(project_id=pid, last_sent=0, pending=None)
        hub.watch(conn, pid)
        conn.start()
        conns.append(conn)
    for seq in (1, 2, 3):
        hub.dispatch(_frame(pid, seq))
    await _settle()
    for seq in (2, 3, 4, 5):
        hub.dispatch(_frame(pid, seq))
    await _settle()
    for conn in conns:
        await conn.stop()
    assert clients[0].sent[0] is clients[1].sent[0]  # joined once, sent to both
    for client in clients:
        assert client.seqs() == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("deflate", [False, True])
async def test_permessage_deflate_follows_the_setting(tmp_path: Path, deflate: bool) -> None:
    """Off by default: the handshake offers no compression (the uvicorn option as the
    service and embedded ``aidp up`` pass it)."""
    app = FastAPI()

    @app.websocket("/ws")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())

    settings = (
        GatewaySettings(data_dir=tmp_path, ws_per_message_deflate=True)
        if deflate
        else GatewaySettings(data_dir=tmp_path)  # the default
    )
    async with serve(app, ws_per_message_deflate=gateway_ws_deflate(settings)) as url:
        async with websockets.connect(url.replace("http", "ws") + "/ws") as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            assert ws.response is not None
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
    assert ("permessage-deflate" in extensions) is deflate
