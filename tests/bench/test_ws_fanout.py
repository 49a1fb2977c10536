"""WebSocket fan-out (issue 14 item 1): 100 subscribers of one project, TrainingProgress
published on RabbitMQ at a fixed rate, through gateway processes on PostgreSQL.

Scenarios, each AIDP_BENCH_ROUNDS (default 3) rounds of AIDP_BENCH_SECONDS (default 10)
seconds, min/median/max printed:

- one replica at 500 events/s and at 1,000 events/s;
- two replicas at 1,000 events/s (the subscribers split between them);
- scaling: one replica, then two, at 1,000 events/s with each replica held to the same CPU
  quota (AIDP_BENCH_REPLICA_CORES, default 0.15 of a core; :mod:`tests.bench.cpu_cap`).
  Uncapped, one replica keeps up with 1,000/s, so a second cannot show more; and on a
  2-core machine the load generator needs most of the CPU. Capped, the replicas set the
  pace, and "two replicas ≥ 1.6 × one" is measured as ingest, not inferred. The quota must
  leave one replica well under half the publish rate: two replicas that reach the publish
  rate show only a lower bound of their ratio (at 0.2 of a core one replica took 620-650/s
  on a quiet machine, so no ratio above 1.6 could show). A round that reached the rate is
  printed as such.

The clients' own CPU (one process for every subscriber) is printed beside the gateway's:
near a whole core, the clients set the pace, not the gateway.

The yardstick is a raw aio-pika consumer of the same events in the same round (its own
queue on the same exchange): "ingest" is the events per second that reached a subscriber
(publish start → last receipt), and its ratio to the raw consumer's. Latency is
publish → receipt. Subscribers opt into batch messages (``"batch": true``); a server
that ignores the option (an older gateway) is measured the same way.

Asserted: nothing lost, nothing out of order. The issue's goals (ingest ≥ 0.95 of raw,
p99 < 100 ms at 500/s; ≥ 0.9 and p99 < 1 s at 1,000/s; two replicas ≥ 1.6 × one) are
printed as met or not, and asserted only with AIDP_BENCH_STRICT=1 (a quiet machine): on a
shared 2-core machine they measure the neighbours as much as the gateway.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest

from shared.bus import create_bus
from shared.bus.base import EXCHANGE
from shared.events import TrainingProgress, new_event
from shared.internal import register_inproc, unregister_inproc
from tests.bench import cpu_cap
from tests.bench.ws_client import MiniWebSocket
from tests.integration.gateway.conftest import SPEC, gateway_process, server_thread
from tests.unit.gateway.authstub import AuthStub

pytestmark = [pytest.mark.bench, pytest.mark.integration, pytest.mark.timeout(3600)]

SUBSCRIBERS = int(os.environ.get("AIDP_BENCH_SUBSCRIBERS", "100"))
SECONDS = float(os.environ.get("AIDP_BENCH_SECONDS", "10"))
ROUNDS = int(os.environ.get("AIDP_BENCH_ROUNDS", "3"))
STRICT = os.environ.get("AIDP_BENCH_STRICT") == "1"
#: CPU quota (cores) per replica in the scaling rounds; 0 skips them (cpu_cap.py says why)
CAP_CORES = float(os.environ.get("AIDP_BENCH_REPLICA_CORES", "0.15"))
QUIET_FOR = 20.0  # seconds without a new receipt: what is missing is lost, not late


class Subscriber:
    def __init__(self) -> None:
        self.count = 0
        self.last_seq = 0
        self.out_of_order = 0
        self.latencies: list[float] = []
        self.last_at = 0.0

    def take(self, message: dict[str, Any], now: float) -> None:
        if message["type"] == "batch":
            for frame in message["frames"]:
                self.take(frame, now)
            return
        if message["type"] != "event":
            return
        seq = message["seq"]
        if self.last_seq and seq != self.last_seq + 1:
            self.out_of_order += 1
        self.last_seq = seq
        self.count += 1
        self.last_at = now
        self.latencies.append(now - message["event"]["payload"]["metrics"]["t"])

    async def run(
        self, ws_url: str, token: str, project_id: str, expected: int, subscribed: list[int]
    ) -> None:
        # a minimal client: the subscribers share the 2 cores with the gateway they measure
        ws = await MiniWebSocket.connect(ws_url)
        try:
            await ws.send(json.dumps({"type": "auth", "token": token}))
            await ws.send(
                json.dumps(
                    {"type": "subscribe", "project_id": project_id, "after": 1, "batch": True}
                )
            )
            while json.loads(await ws.recv())["type"] != "subscribed":
                pass
            subscribed[0] += 1
            while self.count < expected:
                self.take(json.loads(await ws.recv()), time.time())
        finally:
            await ws.close()


def _subscribers_main(
    ws_urls: list[str], token: str, project_id: str, expected: int, timeout: float, pipe: Any
) -> None:
    """Child process: run every subscriber (round-robin over ``ws_urls``), say when all are
    subscribed, get the publish start time back, report stats."""

    async def main() -> dict[str, Any]:
        subscribers = [Subscriber() for _ in range(SUBSCRIBERS)]
        subscribed = [0]
        tasks = [
            asyncio.create_task(
                s.run(ws_urls[i % len(ws_urls)], token, project_id, expected, subscribed)
            )
            for i, s in enumerate(subscribers)
        ]
        while subscribed[0] < SUBSCRIBERS:
            await asyncio.sleep(0.05)
        pipe.send("ready")
        first = time.time()
        cpu_start = time.process_time()
        last_total, last_change = -1, time.monotonic()
        while not all(t.done() for t in tasks) and time.time() - first < timeout:
            await asyncio.sleep(0.5)
            total = sum(s.count for s in subscribers)
            if total != last_total:
                last_total, last_change = total, time.monotonic()
            elif time.monotonic() - last_change > QUIET_FOR:
                break
        for task in tasks:
            task.cancel()
        latencies = sorted(x for s in subscribers for x in s.latencies)
        return {
            "delivered": sum(s.count for s in subscribers),
            # the clients' own CPU: at 100% of a core they, not the gateway, set the pace
            "client_cpu": time.process_time() - cpu_start,
            "out_of_order": sum(s.out_of_order for s in subscribers),
            "last_at": max((s.last_at for s in subscribers), default=first),
            "p50": latencies[len(latencies) // 2] if latencies else float("inf"),
            "p99": latencies[int(len(latencies) * 0.99)] if latencies else float("inf"),
            # the last tenth of receipts: a growing backlog shows as a late tail
            "tail_p50": _tail_p50(subscribers),
        }

    pipe.send(asyncio.run(main()))


def _tail_p50(subscribers: list[Subscriber]) -> float:
    tails = sorted(x for s in subscribers for x in s.latencies[len(s.latencies) * 9 // 10 :])
    return tails[len(tails) // 2] if tails else float("inf")


def _gateway_pid(url: str) -> int:
    """The pid of the ``python -m services.gateway`` serving ``url`` (by its AIDP_PORT)."""
    wanted = f"AIDP_PORT={url.rsplit(':', 1)[1]}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"services.gateway" not in (entry / "cmdline").read_bytes():
                continue
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                return int(entry.name)
        except OSError:
            continue
    raise LookupError(f"no gateway process for {url}")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far: unlike wall time, barely moved by the
    neighbours on a shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RawConsumer:
    """The yardstick: a bare aio-pika consumer of the same events (parse, ack)."""

    def __init__(self, amqp_url: str) -> None:
        self.amqp_url = amqp_url
        self.count = 0
        self.last_at = 0.0
        self.latencies: list[float] = []

    async def __aenter__(self) -> RawConsumer:
        self.connection = await aio_pika.connect(self.amqp_url)
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=256)
        exchange = await channel.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, TrainingProgress.event_type())
        await queue.consume(self._on_message)
        return self

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        body = json.loads(message.body)
        now = time.time()
        self.count += 1
        self.last_at = now
        self.latencies.append(now - body["payload"]["metrics"]["t"])
        await message.ack()

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()


async def _publish(amqp_url: str, project: dict[str, Any], total: int, rate: int) -> float:
    bus = create_bus(amqp_url)
    await bus.connect()
    pid, rid = uuid.UUID(project["id"]), uuid.UUID(project["current_run_id"])
    start = time.monotonic()
    sent = 0
    try:
        while sent < total:
            delay = start + sent / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            # everything due by now in one batch (confirms in flight together): a slow
            # confirm round trip on a busy machine must not lower the publish rate
            due = int((time.monotonic() - start) * rate) + 1 - sent
            envelopes = [
                new_event(
                    TrainingProgress(step=sent + i, metrics={"t": time.time()}),
                    project_id=pid,
                    run_id=rid,
                )
                for i in range(max(1, min(due, 100, total - sent)))
            ]
            batch = len(envelopes)
            results = await bus.publish_many(envelopes)
            for _ in range(3):  # a confirm late on a busy machine: publish again (the
                # gateway's log drops a duplicate event id; the raw consumer may count twice)
                failed = [e for e, r in zip(envelopes, results, strict=True) if r is not None]
                if not failed:
                    break
                results = await bus.publish_many(failed)
                envelopes = failed
            assert not any(results), [r for r in results if r is not None][:3]
            sent += batch  # the whole batch (after a retry, envelopes is its failed part)
    finally:
        await bus.close()
    return time.monotonic() - start


class Bench:
    def __init__(self, tmp_path: Path, urls: list[str], stub: AuthStub, amqp_url: str) -> None:
        self.tmp_path = tmp_path
        self.urls = urls
        self.stub = stub
        self.amqp_url = amqp_url
        user_id, email = stub.user()
        self.token = stub.token(user_id, email, exp=int(time.time()) + 3600)

    async def round(self, rate: int, replicas: int) -> dict[str, Any]:
        """One measurement: a fresh project, subscribers on ``replicas`` gateways."""
        urls = self.urls[:replicas]
        async with httpx.AsyncClient(timeout=60) as http:
            r = await http.post(
                f"{urls[0]}/api/projects",
                json={"name": f"bench-{uuid.uuid4().hex[:8]}", "spec": SPEC},  # names unique
                headers={"Authorization": f"Bearer {self.token}"},
            )
            assert r.status_code == 201, r.text
            project = r.json()
        total = int(rate * SECONDS)
        ws_urls = [u.replace("http", "ws") + "/api/ws" for u in urls]
        drain = 120 + SECONDS * 10
        spawn = multiprocessing.get_context("spawn")
        parent, child = spawn.Pipe()
        proc = spawn.Process(
            target=_subscribers_main,
            args=(ws_urls, self.token, project["id"], total, drain, child),
        )
        proc.start()
        pids = [_gateway_pid(u) for u in urls]
        try:
            assert await asyncio.to_thread(parent.poll, 120) and parent.recv() == "ready"
            async with RawConsumer(self.amqp_url) as raw:
                cpu = sum(map(_cpu_seconds, pids))
                start = time.time()
                publish_seconds = await _publish(self.amqp_url, project, total, rate)
                assert await asyncio.to_thread(parent.poll, drain + 60)
                stats = parent.recv()
                cpu = sum(map(_cpu_seconds, pids)) - cpu
        finally:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
        per_subscriber = stats["delivered"] / SUBSCRIBERS
        raw_rate = min(raw.count, total) / max(raw.last_at - start, 1e-9)
        ingest = per_subscriber / max(stats["last_at"] - start, 1e-9)
        raw_lat = sorted(raw.latencies)
        return {
            "published_rate": total / publish_seconds,
            "ingest": ingest,
            "raw": raw_rate,
            "ratio": ingest / raw_rate if raw_rate else 0.0,
            "raw_p99": raw_lat[int(len(raw_lat) * 0.99)] if raw_lat else float("inf"),
            "lost": total * SUBSCRIBERS - stats["delivered"],
            # gateway CPU per event fanned out to every subscriber (store + fan-out); the
            # drain wait adds only idle time (polls, pings)
            "cpu_ms": cpu * 1000 / total,
            "client_cpu_share": stats["client_cpu"] / max(stats["last_at"] - start, 1e-9),
            **stats,
        }


def _spread(values: list[float], fmt: str = "{:.2f}") -> str:
    return "/".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def _report(name: str, rounds: list[dict[str, Any]]) -> None:
    print(
        f"\n{name} ({len(rounds)} rounds, min/median/max, load {os.getloadavg()[0]:.1f}):\n"
        f"  published {_spread([r['published_rate'] for r in rounds], '{:.0f}')}/s; "
        f"gateway ingest {_spread([r['ingest'] for r in rounds], '{:.0f}')}/s; "
        f"raw consumer {_spread([r['raw'] for r in rounds], '{:.0f}')}/s\n"
        f"  ingest / raw {_spread([r['ratio'] for r in rounds])}\n"
        f"  publish->receipt p50 {_spread([r['p50'] * 1000 for r in rounds], '{:.0f}')} ms, "
        f"p99 {_spread([r['p99'] * 1000 for r in rounds], '{:.0f}')} ms, "
        f"last-tenth p50 {_spread([r['tail_p50'] * 1000 for r in rounds], '{:.0f}')} ms "
        f"(raw p99 {_spread([r['raw_p99'] * 1000 for r in rounds], '{:.0f}')} ms)\n"
        f"  gateway CPU {_spread([r['cpu_ms'] for r in rounds])} ms per event "
        f"({SUBSCRIBERS} subscribers, all replicas); the clients' process used "
        f"{_spread([r['client_cpu_share'] for r in rounds])} of a core\n"
        f"  lost {sum(r['lost'] for r in rounds)}, "
        f"out of order {sum(r['out_of_order'] for r in rounds)}",
        flush=True,
    )


def _goal(text: str, met: bool) -> bool:
    print(f"  goal {text}: {'met' if met else 'NOT met'}", flush=True)
    return met


@pytest.fixture
def auth(postgres_url: str) -> Iterator[tuple[str, AuthStub]]:
    stub = AuthStub()
    name = f"bench-auth-{uuid.uuid4().hex[:6]}"
    register_inproc(name, stub.app)
    with server_thread(stub.app) as auth_url:
        yield auth_url, stub
    unregister_inproc(name)


async def test_ws_fanout(
    tmp_path: Path,
    postgres_url: str,
    amqp_url: str,
    bao_server: tuple[str, str],
    auth: tuple[str, AuthStub],
) -> None:
    auth_url, stub = auth

    def replica(stack: ExitStack) -> str:
        return stack.enter_context(
            gateway_process(
                tmp_path,
                postgres_url=postgres_url,
                amqp_url=amqp_url,
                auth_url=auth_url,
                bao=bao_server,
                # measure delivery, not the slow-client policy: a deep per-client queue
                env={
                    "AIDP_WS_SEND_QUEUE": "1000000",
                    "AIDP_WS_SEND_TIMEOUT": "120",
                    "AIDP_ACCESS_TOKEN_TTL_SECONDS": "3600",
                    "AIDP_USER_MAX_ACTIVE_RUNS": "0",  # a fresh project (and run) per round
                },
            )
        )

    results: dict[str, list[dict[str, Any]]] = {}

    async def measure(name: str, rate: int, replicas: int) -> None:
        results[name] = [await bench.round(rate, replicas) for _ in range(ROUNDS)]
        _report(f"WS fan-out, {SUBSCRIBERS} subscribers, {name}", results[name])

    with ExitStack() as stack:
        urls = [replica(stack)]
        bench = Bench(tmp_path, urls, stub, amqp_url)
        # one replica alone (a second one would compete for the gateway queue)
        await measure("500/s, 1 replica", 500, 1)
        await measure("1000/s, 1 replica", 1000, 1)
        if CAP_CORES and cpu_cap.available():
            with cpu_cap.cpu_capped([_gateway_pid(urls[0])], CAP_CORES):
                await measure(f"1000/s, 1 replica capped at {CAP_CORES} core", 1000, 1)
        urls.append(replica(stack))
        await measure("1000/s, 2 replicas", 1000, 2)
        if CAP_CORES and cpu_cap.available():
            with cpu_cap.cpu_capped([_gateway_pid(u) for u in urls], CAP_CORES):
                await measure(f"1000/s, 2 replicas capped at {CAP_CORES} core each", 1000, 2)

    for rounds in results.values():
        assert sum(r["lost"] for r in rounds) == 0
        assert sum(r["out_of_order"] for r in rounds) == 0
    at500, at1000, two = (
        results["500/s, 1 replica"],
        results["1000/s, 1 replica"],
        results["1000/s, 2 replicas"],
    )

    def median(rounds: list[dict[str, Any]], key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    print("\nGoals (issue 14), on medians:")
    met = [
        _goal("500/s ingest >= 0.95 of raw", median(at500, "ratio") >= 0.95),
        _goal("500/s p99 < 100 ms", median(at500, "p99") < 0.1),
        _goal("1000/s ingest >= 0.9 of raw", median(at1000, "ratio") >= 0.9),
        _goal("1000/s p99 < 1 s", median(at1000, "p99") < 1.0),
        _goal("1000/s no growing backlog (last-tenth p50 < 1 s)", median(at1000, "tail_p50") < 1.0),
    ]
    # uncapped, one replica already keeps up with the publish rate, so two cannot show
    # more; the capped rounds below measure what the second replica adds
    print(
        f"  two replicas uncapped: {median(two, 'ingest') / median(at1000, 'ingest'):.2f} x one "
        f"replica's ingest (at most {median(two, 'raw') / median(at1000, 'ingest'):.2f} x is "
        "possible while one replica keeps up with the publish rate)",
        flush=True,
    )
    capped_one = results.get(f"1000/s, 1 replica capped at {CAP_CORES} core")
    capped_two = results.get(f"1000/s, 2 replicas capped at {CAP_CORES} core each")
    if capped_one and capped_two:
        # the replicas, not the machine, set the pace: what a second replica adds
        scale = median(capped_two, "ingest") / median(capped_one, "ingest")
        if median(capped_two, "ingest") >= 0.95 * median(capped_two, "published_rate"):
            print(
                "  (two capped replicas kept up with the publish rate: their ratio is a "
                "lower bound)",
                flush=True,
            )
        met.append(
            _goal(
                f"two replicas >= 1.6 x one replica's ingest, each capped at {CAP_CORES} "
                f"core ({median(capped_one, 'ingest'):.0f}/s -> "
                f"{median(capped_two, 'ingest'):.0f}/s: {scale:.2f} x)",
                scale >= 1.6,
            )
        )
    else:
        print("  (no writable cpu cgroup here: the capped scaling rounds were skipped)")
    # what the CPU says: two replicas (a core each) keep up with 2 / (CPU per event of
    # both together, ms) events per ms, one with 1 / (its CPU per event); their ratio is
    # the capacity two replicas add, whether or not the publish rate could show it
    capacity = 2 * median(at1000, "cpu_ms") / median(two, "cpu_ms")
    print(
        f"  capacity from CPU per event: two replicas {capacity:.2f} x one "
        f"(one replica {median(at1000, 'cpu_ms'):.2f} ms/event, both together "
        f"{median(two, 'cpu_ms'):.2f} ms/event)",
        flush=True,
    )
    if STRICT:
        assert all(met)
