"""WebSocket fan-out: 100 subscribers of one project, TrainingProgress published on
RabbitMQ at 1,000/s for AIDP_BENCH_SECONDS (default 30) seconds, through a gateway
process on PostgreSQL. Prints delivered messages/s, p50/p99 publish→receipt latency,
and messages lost (must be 0)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
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

SUBSCRIBERS = int(os.environ.get("AIDP_BENCH_SUBSCRIBERS", "100"))
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
        with gateway_process(
            tmp_path,
            postgres_url=postgres_url,
            amqp_url=amqp_url,
            auth_url=auth_url,
            bao=bao_server,
            # measure delivery, not the slow-client policy: a deep per-client queue
            env={"AIDP_WS_SEND_QUEUE": "200000", "AIDP_WS_SEND_TIMEOUT": "60"},
        ) as url:
            yield url, stub
    unregister_inproc(name)


class Subscriber:
    def __init__(self) -> None:
        self.count = 0
        self.last_seq = 0
        self.out_of_order = 0
        self.latencies: list[float] = []
        self.last_at = 0.0

    async def run(
        self, ws_url: str, token: str, project_id: str, expected: int, subscribed: list[int]
    ) -> None:
        async with websockets.connect(ws_url, max_queue=None, max_size=None) as ws:
            await ws.send(json.dumps({"type": "auth", "token": token}))
            await ws.send(json.dumps({"type": "subscribe", "project_id": project_id, "after": 1}))
            while json.loads(await ws.recv())["type"] != "subscribed":
                pass
            subscribed[0] += 1
            while self.count < expected:
                message = json.loads(await ws.recv())
                now = time.time()
                if message["type"] != "event":
                    continue
                seq = message["seq"]
                if self.last_seq and seq != self.last_seq + 1:
                    self.out_of_order += 1
                self.last_seq = seq
                self.count += 1
                self.last_at = now
                self.latencies.append(now - message["event"]["payload"]["metrics"]["t"])


def _subscribers_main(
    ws_url: str, token: str, project_id: str, expected: int, timeout: float, pipe: Any
) -> None:
    """Child process: run every subscriber, say when all are subscribed, report stats."""

    async def main() -> dict[str, Any]:
        subscribers = [Subscriber() for _ in range(SUBSCRIBERS)]
        subscribed = [0]
        tasks = [
            asyncio.create_task(s.run(ws_url, token, project_id, expected, subscribed))
            for s in subscribers
        ]
        while subscribed[0] < SUBSCRIBERS:
            await asyncio.sleep(0.05)
        pipe.send("ready")
        first = time.time()
        # wait until every message arrived, or until nothing arrived for 30 s (then what is
        # missing is lost, not late); ``timeout`` bounds the whole wait
        last_total, last_change = -1, time.monotonic()
        while not all(t.done() for t in tasks) and time.time() - first < timeout:
            await asyncio.sleep(1)
            total = sum(s.count for s in subscribers)
            if total != last_total:
                last_total, last_change = total, time.monotonic()
            elif time.monotonic() - last_change > 30:
                break
        last_at = max((s.last_at for s in subscribers), default=first)
        latencies = sorted(x for s in subscribers for x in s.latencies)
        return {
            "delivered": sum(s.count for s in subscribers),
            "out_of_order": sum(s.out_of_order for s in subscribers),
            "elapsed": last_at - first,
            "p50": latencies[len(latencies) // 2] if latencies else None,
            "p99": latencies[int(len(latencies) * 0.99)] if latencies else None,
        }

    pipe.send(asyncio.run(main()))


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
    drain = 600 + SECONDS * 10
    parent, child = multiprocessing.get_context("spawn").Pipe()
    proc = multiprocessing.get_context("spawn").Process(
        target=_subscribers_main, args=(ws_url, token, project["id"], total, drain, child)
    )
    proc.start()
    try:
        assert await asyncio.to_thread(parent.poll, 60) and parent.recv() == "ready"
        sampler = asyncio.create_task(_sample(url))
        publish_seconds = await _publish(amqp_url, project, total)
        assert await asyncio.to_thread(parent.poll, drain + 30)
        stats = parent.recv()
        sampler.cancel()
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
    delivered = stats["delivered"]
    lost = total * SUBSCRIBERS - delivered
    print(
        f"\nWS fan-out: {SUBSCRIBERS} subscribers, {total} TrainingProgress events published at "
        f"{total / publish_seconds:.0f}/s over {publish_seconds:.1f}s on RabbitMQ\n"
        f"  delivered {delivered} messages in {stats['elapsed']:.1f}s = "
        f"{delivered / stats['elapsed']:,.0f} msgs/s\n"
        f"  latency publish->receipt p50 {stats['p50'] * 1000:.0f} ms, "
        f"p99 {stats['p99'] * 1000:.0f} ms\n"
        f"  lost {lost}, out of order {stats['out_of_order']}"
    )
    assert lost == 0
    assert stats["out_of_order"] == 0


async def _sample(url: str) -> None:
    """Print the gateway's stored and relayed counters every few seconds (where it lags)."""
    async with httpx.AsyncClient(timeout=10) as http:
        while True:
            await asyncio.sleep(5)
            text = (await http.get(f"{url}/metrics")).text
            picked = [
                line
                for line in text.splitlines()
                if line.startswith(("aidp_events_stored_total", "aidp_ws_events_relayed_total"))
            ]
            print("  gateway:", ", ".join(picked), flush=True)
