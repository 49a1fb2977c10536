"""In-process bus with the same ack / retry / dead-letter semantics as RabbitMQ.

Brokers are process-global per URL (``memory://`` and ``memory://name`` are two), so all
services of an embedded process share one by using the same URL. Messages are kept as
bytes, exactly as on the wire, so serialisation bugs show here too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from shared.bus.base import DEAD_LETTER_QUEUE, Bus, Handler, UnroutableError
from shared.errors import DeliveryAction, delivery_action
from shared.events import Envelope
from shared.telemetry import consumer_span

__all__ = ["MemoryBroker", "MemoryBus"]

log = logging.getLogger(__name__)


@dataclass
class _Message:
    body: bytes
    type: str
    deliveries: int = 0
    death_reason: str | None = None


@dataclass
class _Queue:
    name: str
    types: set[str]
    max_deliveries: int
    items: asyncio.Queue[_Message] = field(default_factory=asyncio.Queue)
    consumers: int = 0


class MemoryBroker:
    """The shared state behind every :class:`MemoryBus` with the same URL."""

    _brokers: dict[str, MemoryBroker] = {}

    def __init__(self) -> None:
        self.queues: dict[str, _Queue] = {}
        self.dead: list[_Message] = []

    @classmethod
    def for_url(cls, url: str) -> MemoryBroker:
        return cls._brokers.setdefault(url, cls())

    @classmethod
    def reset(cls, url: str | None = None) -> None:
        """Forget broker state (tests)."""
        if url is None:
            cls._brokers.clear()
        else:
            cls._brokers.pop(url, None)

    def declare(self, name: str, types: Sequence[str], max_deliveries: int) -> _Queue:
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = _Queue(name, set(types), max_deliveries)
        else:
            queue.types.update(types)
            queue.max_deliveries = max_deliveries
        return queue

    def route(self, body: bytes, event_type: str) -> None:
        targets = [q for q in self.queues.values() if event_type in q.types]
        if not targets:
            raise UnroutableError(f"no queue is bound for {event_type}")
        for queue in targets:
            queue.items.put_nowait(_Message(body, event_type))

    def dead_envelopes(self) -> list[Envelope]:
        return [Envelope.from_bytes(m.body) for m in self.dead]


class MemoryBus(Bus):
    """A :class:`Bus` on a process-global :class:`MemoryBroker`."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self.broker = MemoryBroker.for_url(url)
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = False

    async def connect(self) -> None:
        self._connected = True

    async def close(self) -> None:
        self._connected = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def healthy(self) -> bool:
        return self._connected

    async def publish(self, envelope: Envelope) -> None:
        if not self._connected:
            raise ConnectionError("memory bus is not connected")
        self.broker.route(envelope.to_bytes(), envelope.type)
        await asyncio.sleep(0)  # let consumers run, as a network round trip would

    async def declare(self, queue: str, event_types: Sequence[str], *, max_deliveries: int = 5) -> None:
        self.broker.declare(queue, event_types, max_deliveries)

    async def subscribe(
        self,
        queue: str,
        event_types: Sequence[str],
        handler: Handler,
        *,
        prefetch: int = 16,
        max_deliveries: int = 5,
    ) -> None:
        q = self.broker.declare(queue, event_types, max_deliveries)
        q.consumers += 1
        for _ in range(max(1, prefetch)):
            self._tasks.append(asyncio.create_task(self._consume(q, handler)))

    async def _consume(self, queue: _Queue, handler: Handler) -> None:
        while True:
            message = await queue.items.get()
            message.deliveries += 1
            try:
                envelope = Envelope.from_bytes(message.body)
            except (ValidationError, ValueError) as exc:
                self._dead_letter(message, f"invalid envelope: {exc}")
                continue
            error: BaseException | None = None
            try:
                with consumer_span(f"consume {envelope.type}", envelope.traceparent, queue=queue.name):
                    await handler(envelope)
            except asyncio.CancelledError:
                queue.items.put_nowait(message)  # not acked: hand it back, as a broker would
                raise
            except Exception as exc:
                error = exc
            action = delivery_action(error)
            if action is DeliveryAction.ACK:
                continue
            if action is DeliveryAction.RETRY and message.deliveries < queue.max_deliveries:
                log.warning("retrying %s on %s: %r", envelope.type, queue.name, error)
                await asyncio.sleep(min(0.05 * message.deliveries, 1.0))
                queue.items.put_nowait(message)
                continue
            self._dead_letter(message, f"{action.value}: {error!r}")

    def _dead_letter(self, message: _Message, reason: str) -> None:
        log.error("dead-lettering %s: %s", message.type, reason)
        message.death_reason = reason
        self.broker.dead.append(message)
        dead_queue = self.broker.queues.get(DEAD_LETTER_QUEUE)
        if dead_queue is not None:
            dead_queue.items.put_nowait(message)
