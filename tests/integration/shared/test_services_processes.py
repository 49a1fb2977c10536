"""The five services as separate processes on RabbitMQ, PostgreSQL and OpenBao.

Each ``python -m services.<name>`` starts in distributed mode against one vhost, one
database (shared, as in deploy/compose) and a real OpenBao; the test waits for every
``/readyz``, then publishes a ``ProjectCreated`` and shows it reaches every service whose
queue is bound to it (the broker's own delivery counters, via the management API), while a
test-owned queue bound to every type sees the event on the same exchange. It does not
depend on what the services do with the event.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from shared.bus.rabbit import RabbitBus
from shared.events import EVENT_TYPES, Envelope, ProjectCreated, new_event
from tests.integration.shared.harness import eventually, management, vhost_of
from tests.support.infra import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
SERVICES = ["auth", "gateway", "provisioner", "fetcher", "trainer"]
READY_TIMEOUT = 180.0


@dataclass
class ServiceProcess:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture
def services(
    amqp_url: str, postgres_url: str, bao_server: tuple[str, str], tmp_path: Path
) -> Iterator[dict[str, ServiceProcess]]:
    addr, token = bao_server
    ports = {name: free_port() for name in SERVICES}
    common = {
        **os.environ,
        "AIDP_MODE": "distributed",
        "AIDP_BUS_URL": amqp_url,
        "AIDP_DATABASE_URL": postgres_url,
        "AIDP_VAULT_ADDR": addr,
        "AIDP_VAULT_TOKEN": token,
        "AIDP_STORE_DIR": str(tmp_path / "store"),
        "AIDP_HOST": "127.0.0.1",
        **{f"AIDP_{name.upper()}_URL": f"http://127.0.0.1:{port}" for name, port in ports.items()},
    }
    started: dict[str, ServiceProcess] = {}
    try:
        for name in SERVICES:
            log = tmp_path / f"{name}.log"
            env = {**common, "AIDP_PORT": str(ports[name]), "AIDP_DATA_DIR": str(tmp_path / name)}
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", f"services.{name}"],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            started[name] = ServiceProcess(name, ports[name], proc, log)
        yield started
    finally:
        for service in started.values():
            if service.proc.poll() is None:
                service.proc.send_signal(signal.SIGTERM)
        for service in started.values():
            try:
                service.proc.wait(20)
            except subprocess.TimeoutExpired:
                service.proc.kill()
                service.proc.wait(10)


def wait_ready(services: dict[str, ServiceProcess]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    pending = dict(services)
    last: dict[str, str] = {}
    while pending:
        for name, service in list(pending.items()):
            if service.proc.poll() is not None:
                pytest.fail(f"{name} exited with {service.proc.returncode}:\n{service.tail()}")
            try:
                r = httpx.get(f"http://127.0.0.1:{service.port}/readyz", timeout=5)
                last[name] = f"{r.status_code} {r.text[:300]}"
                if r.status_code == 200:
                    del pending[name]
            except httpx.HTTPError as exc:
                last[name] = repr(exc)
        if pending and time.monotonic() > deadline:
            report = "\n".join(f"--- {n}: {last.get(n)}\n{s.tail()}" for n, s in pending.items())
            pytest.fail(f"not ready after {READY_TIMEOUT}s: {sorted(pending)}\n{report}")
        time.sleep(0.5)


def queues(amqp_url: str) -> dict[str, dict[str, Any]]:
    api, auth = management(amqp_url)
    vhost = quote(vhost_of(amqp_url), safe="")
    listed = httpx.get(f"{api}/queues/{vhost}", auth=auth, timeout=10).json()
    return {q["name"]: q for q in listed}


def bound_types(amqp_url: str, queue: str) -> set[str]:
    api, auth = management(amqp_url)
    vhost = quote(vhost_of(amqp_url), safe="")
    listed = httpx.get(f"{api}/queues/{vhost}/{quote(queue, safe='')}/bindings", auth=auth).json()
    return {b["routing_key"] for b in listed if b["source"] == "aidp.events"}


def delivered(queue: dict[str, Any]) -> int:
    stats = queue.get("message_stats") or {}
    return int(stats.get("deliver_get", 0))


async def test_an_event_published_on_the_bus_reaches_every_service_process(
    services: dict[str, ServiceProcess], amqp_url: str
) -> None:
    try:
        await _publish_and_observe(services, amqp_url)
    except AssertionError as exc:
        logs = "\n".join(f"--- {name}:\n{s.tail(15)}" for name, s in services.items())
        raise AssertionError(f"{exc}\n{logs}") from exc


async def _publish_and_observe(services: dict[str, ServiceProcess], amqp_url: str) -> None:
    wait_ready(services)

    consuming = {name: q for name, q in queues(amqp_url).items() if name in SERVICES}
    assert consuming, "no service declared a queue"
    for name, queue in consuming.items():
        assert queue["type"] == "quorum", f"{name}'s queue is {queue['type']}"

    # The management API's statistics lag a few seconds behind the broker.
    def all_consumed() -> bool:
        current = queues(amqp_url)
        return all(current[name].get("consumers", 0) >= 1 for name in consuming)

    await eventually(all_consumed, timeout=60, what=f"consumers on {sorted(consuming)}")
    receivers = {name for name in consuming if "ProjectCreated" in bound_types(amqp_url, name)}
    assert receivers, "no service consumes ProjectCreated"

    seen: list[Envelope] = []

    async def observe(envelope: Envelope) -> None:
        seen.append(envelope)

    bus = RabbitBus(amqp_url)
    await bus.connect()
    try:
        await bus.subscribe("test-observer", sorted(EVENT_TYPES), observe)
        sent = new_event(
            ProjectCreated(owner_id=uuid.uuid4(), spec={"name": "process-test"}),
            project_id=uuid.uuid4(),
            run_id=uuid.uuid4(),
        )
        await bus.publish(sent)
        await eventually(lambda: any(e.id == sent.id for e in seen), what="the observer copy")

        def all_received() -> bool:
            current = queues(amqp_url)
            return all(delivered(current[name]) >= 1 for name in receivers)

        await eventually(all_received, timeout=60, what=f"delivery to {sorted(receivers)}")
        # What the services said in reply depends on their logic; report, don't assert.
        await asyncio.sleep(3)
        replies = sorted({e.type for e in seen if e.correlation_id == sent.id and e.id != sent.id})
        print(f"\nProjectCreated reached {sorted(receivers)}; replies seen: {replies or 'none'}")
    finally:
        await bus.close()
    for name, service in services.items():
        assert service.proc.poll() is None, f"{name} died:\n{service.tail()}"
