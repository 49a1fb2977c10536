"""WebSocket fan-out: 100 subscribers of one project, TrainingProgress published on
RabbitMQ at 1,000/s for AIDP_BENCH_SECONDS (default 30) seconds, through a gateway
process on PostgreSQL. Prints delivered messages/s, p50/p99 publish→receipt latency,
and messages lost (must be 0)."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from shared.bus import create_bus
from shared.events import TrainingProgress, new_event
from shared.internal import register_inproc, unregister_inproc
from tests.integration.gateway.conftest import SPEC, gateway_process, server_thread
from tests.unit.gateway.authstub import AuthStub

pytestmark = [pytest.mark.bench, pytest.mark.integration]

SUBSCRIBERS = 100
RATE = 1000  # events per second
SECONDS = float(os.environ.get("AIDP_BENCH_SECONDS", "30"))


@pytest.fixture
def gateway(
    tmp_path: Path, postgres_url: str, amqp_url: str, bao_server: tuple[str, str]
) -> Iterator[tuple[str, AuthStub]]:
    stub = AuthStub()
    name = f"bench-auth-{uuid.uuid4().hex[:6]}"
    register_inproc(name, stub.app)
    with server_thread(stub.app) as auth_url:
        proc, url = gateway_process(
            tmp_path,
            postgres_url=postgres_url,
            amqp_url=amqp_url,
            auth_url=auth_url,
            bao=bao_server,
            # measure delivery, not the slow-client policy: a deep per-client queue
            env={"AIDP_WS_SEND_QUEUE": "200000", "AIDP_WS_PING_INTERVAL": "30"},
        )
        try:
            yield url, stub
        finally:
            proc.terminate()
            proc.wait(30)
    unregister_inproc(name)


class Subscriber:
    def __init__(self) -> None:
        self.count = 0
        self.last_seq = 0
        self.out_of_order = 0
        self.latencies: list[float] = []

    async def run(
        self,
        ws_url: str,
        token: str,
        project_id: str,
        expected: int,
        ready: asyncio.Event,
        counter: list[int],
    ) -> None:
        async with websockets.connect(ws_url, max_queue=None, max_size=None) as ws:
            await ws.send(json.dumps({"type": "auth", "token": token}))
            await ws.send(json.dumps({"type": "subscribe", "project_id": project_id, "after": 1}))
            while json.loads(await ws.recv())["type"] != "subscribed":
                pass
            counter[0] += 1
            if counter[0] == SUBSCRIBERS:
                ready.set()
            while self.count < expected:
                raw = await ws.recv()
                now = time.time()
                message = json.loads(raw)
                if message["type"] != "event":
                    continue
                seq = message["seq"]
                if seq != self.last_seq + 1 and self.last_seq:
                    self.out_of_order += 1
                self.last_seq = seq
                self.count += 1
                self.latencies.append(now - message["event"]["payload"]["metrics"]["t"])


async def _publish(amqp_url: str, project: dict[str, Any], total: int) -> float:
    bus = create_bus(amqp_url)
    await bus.connect()
    pid, rid = uuid.UUID(project["id"]), uuid.UUID(project["current_run_id"])
    batch = 10
    start = time.monotonic()
    sent = 0
    try:
        while sent < total:
            due = start + sent / RATE
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            envelopes = [
                new_event(
                    TrainingProgress(step=sent + i, metrics={"t": time.time()}),
                    project_id=pid,
                    run_id=rid,
                )
                for i in range(min(batch, total - sent))
            ]
            results = await bus.publish_many(envelopes)
            assert not any(results), results
            sent += len(envelopes)
    finally:
        await bus.close()
    return time.monotonic() - start


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def test_ws_fanout(gateway: tuple[str, AuthStub], amqp_url: str) -> None:
    url, stub = gateway
    user_id, email = stub.user()
    token = stub.token(user_id, email, exp=int(time.time()) + 3600)
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(
            f"{url}/api/projects",
            json={"name": "bench", "spec": SPEC},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 201, r.text
        project = r.json()
    total = int(RATE * SECONDS)
    ws_url = url.replace("http", "ws") + "/api/ws"
    subscribers = [Subscriber() for _ in range(SUBSCRIBERS)]
    ready, counter = asyncio.Event(), [0]
    tasks = [
        asyncio.create_task(s.run(ws_url, token, project["id"], total, ready, counter))
        for s in subscribers
    ]
    await asyncio.wait_for(ready.wait(), 60)
    start = time.monotonic()
    publish_seconds = await _publish(amqp_url, project, total)
    drain_deadline = 120 + SECONDS * 3
    done, pending = await asyncio.wait(tasks, timeout=drain_deadline)
    elapsed = time.monotonic() - start
    for task in pending:
        task.cancel()
    for task in done:
        task.result()
    delivered = sum(s.count for s in subscribers)
    lost = total * SUBSCRIBERS - delivered
    latencies = [x for s in subscribers for x in s.latencies]
    print(
        f"\nWS fan-out: {SUBSCRIBERS} subscribers, {total} TrainingProgress events published at "
        f"{total / publish_seconds:.0f}/s over {publish_seconds:.1f}s on RabbitMQ\n"
        f"  delivered {delivered} messages in {elapsed:.1f}s = {delivered / elapsed:,.0f} msgs/s\n"
        f"  latency publish->receipt p50 {_pct(latencies, 0.50) * 1000:.0f} ms, "
        f"p99 {_pct(latencies, 0.99) * 1000:.0f} ms\n"
        f"  lost {lost}, out of order {sum(s.out_of_order for s in subscribers)}"
    )
    assert lost == 0
    assert all(s.out_of_order == 0 for s in subscribers)
