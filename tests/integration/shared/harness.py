"""One way to drive either bus implementation from the contract tests.

:class:`BusHarness` creates connected buses on one URL, injects raw (possibly invalid)
messages, and reads what reached ``aidp.dead``, for the memory broker and RabbitMQ alike.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import aio_pika
import httpx

from shared.bus import DEAD_LETTER_QUEUE, EXCHANGE, Bus, create_bus
from shared.bus.memory import MemoryBroker
from tests.support.infra import management

__all__ = ["BusHarness", "close_vhost_connections", "eventually", "management", "vhost_of"]


async def eventually(
    predicate: Callable[[], bool], *, timeout: float = 15.0, what: str = "condition"
) -> None:
    """Wait until ``predicate()`` is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def vhost_of(amqp_url: str) -> str:
    return unquote(urlsplit(amqp_url).path.lstrip("/")) or "/"


def close_vhost_connections(amqp_url: str, *, expect: int = 1, timeout: float = 15.0) -> int:
    """Make the broker close every connection of ``amqp_url``'s vhost (and no other's).

    Uses ``rabbitmqctl close_all_connections --vhost`` when the broker is local (immediate),
    else the management API (whose connection list lags a few seconds). Returns how many
    connections were closed as far as it can tell.
    """
    vhost = vhost_of(amqp_url)
    if shutil.which("rabbitmqctl") and urlsplit(amqp_url).hostname in ("127.0.0.1", "localhost"):
        done = subprocess.run(
            ["rabbitmqctl", "-q", "close_all_connections", "--vhost", vhost, "aidp test"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode == 0:
            return expect
    api, auth = management(amqp_url)
    deadline = time.monotonic() + timeout
    names: list[str] = []
    while time.monotonic() < deadline:
        listed = httpx.get(f"{api}/vhosts/{vhost}/connections", auth=auth, timeout=10).json()
        names = [c["name"] for c in listed if c.get("vhost") == vhost]
        if len(names) >= expect:
            break
        time.sleep(0.2)
    for name in names:
        httpx.delete(
            f"{api}/connections/{name}", auth=auth, headers={"X-Reason": "aidp test"}, timeout=10
        )
    return len(names)


@dataclass
class BusHarness:
    kind: str  # "memory" or "rabbit"
    url: str
    buses: list[Bus] = field(default_factory=list)
    _dead: list[bytes] = field(default_factory=list)
    _raw: Any = None  # a plain aio-pika connection for raw publishes and reading aidp.dead

    async def bus(self, **options: Any) -> Bus:
        """A new connected bus on the harness URL (closed at teardown)."""
        bus = create_bus(self.url, **options)
        await bus.connect()
        self.buses.append(bus)
        return bus

    async def _raw_channel(self) -> Any:
        if self._raw is None:
            self._raw = await aio_pika.connect(self.url)
        return await self._raw.channel()

    async def publish_raw(self, body: bytes, routing_key: str) -> None:
        """Put ``body`` on the exchange as-is (for invalid messages)."""
        if self.kind == "memory":
            MemoryBroker.for_url(self.url).route(body, routing_key)
            return
        channel = await self._raw_channel()
        exchange = await channel.get_exchange(EXCHANGE)
        await exchange.publish(aio_pika.Message(body), routing_key, mandatory=True)
        await channel.close()

    async def dead(self, *, at_least: int = 1, timeout: float = 20.0) -> list[bytes]:
        """Bodies that reached ``aidp.dead`` so far, waiting for ``at_least`` of them."""
        deadline = time.monotonic() + timeout
        while True:
            if self.kind == "memory":
                self._dead = [m.body for m in MemoryBroker.for_url(self.url).dead]
            else:
                channel = await self._raw_channel()
                queue = await channel.declare_queue(DEAD_LETTER_QUEUE, passive=True)
                while (message := await queue.get(no_ack=True, fail=False)) is not None:
                    self._dead.append(message.body)
                await channel.close()
            if len(self._dead) >= at_least or time.monotonic() > deadline:
                return list(self._dead)
            await asyncio.sleep(0.1)

    async def aclose(self) -> None:
        for bus in reversed(self.buses):
            await bus.close()
        if self._raw is not None:
            await self._raw.close()
