"""In-process bus with the same ack / retry / dead-letter semantics as RabbitMQ.

Brokers are process-global per URL (``memory://`` and ``memory://name`` are two), so all
services of an embedded process share one by using the same URL. Messages are kept as
bytes, exactly as on the wire, so serialisation bugs show here too.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from shared.bus.base import (
    DEAD_LETTER_QUEUE,
    Bus,
    Handler,
    PublishFailed,
    StoredEvent,
    UnroutableError,
    call_through_outages,
)
from shared.errors import DeliveryAction, delivery_action
from shared.events import Envelope
from shared.telemetry import consumer_span, producer_span

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
    broadcast: bool = False  # one bus instance's own queue: failures dropped, deleted on close


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
    """A :class:`Bus` on a process-global :class:`MemoryBroker`.

    ``close`` lets handlers already running finish for up to ``close_grace`` seconds, then
    cancels them; a cancelled delivery goes back to its queue (it was never acked).
    """

    def __init__(self, url: str = "memory://", *, close_grace: float = 10.0) -> None:
        self.url = url
        self.broker = MemoryBroker.for_url(url)
        self.close_grace = close_grace
        self._tasks: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[Any]] = set()
        self._connected = False
        self._own_queues: list[str] = []  # broadcast queues, deleted on close (auto-delete)

    async def connect(self) -> None:
        self._connected = True

    async def close(self) -> None:
        self._connected = False
        for name in self._own_queues:
            self.broker.queues.pop(name, None)
        self._own_queues.clear()
        tasks, self._tasks = self._tasks, []
        busy = [t for t in tasks if t in self._busy]
        for task in tasks:
            if task not in self._busy:
                task.cancel()  # idle consumers: waiting for a message
        if busy:
            _done, pending = await asyncio.wait(busy, timeout=self.close_grace)
            for task in pending:
                task.cancel()
        for task in busy:
            task.cancel()  # finished its message: stop before taking another
        await asyncio.gather(*tasks, return_exceptions=True)

    async def healthy(self) -> bool:
        return self._connected

    async def publish(self, envelope: Envelope) -> None:
        if not self._connected:
            raise PublishFailed("memory bus is not connected")
        with producer_span(f"publish {envelope.type}", envelope.traceparent, bus="memory"):
            self.broker.route(envelope.to_bytes(), envelope.type)
        await asyncio.sleep(0)  # let consumers run, as a network round trip would

    async def publish_stored(self, events: Sequence[StoredEvent]) -> list[BaseException | None]:
        if not self._connected:
            error = PublishFailed("memory bus is not connected")
            return [error for _ in events]
        results: list[BaseException | None] = []
        for event in events:
            try:
                self.broker.route(event.body, event.event_type)
                results.append(None)
            except Exception as exc:  # reported per event, as publish_many does
                results.append(exc)
        await asyncio.sleep(0)
        return results

    async def declare(
        self, queue: str, event_types: Sequence[str], *, max_deliveries: int = 5
    ) -> None:
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

    async def subscribe_broadcast(self, event_types: Sequence[str], handler: Handler) -> None:
        name = f"broadcast.{uuid.uuid4().hex}"
        q = self.broker.declare(name, event_types, 1)
        q.broadcast, q.consumers = True, 1
        self._own_queues.append(name)
        self._tasks.append(asyncio.create_task(self._consume(q, handler)))

    async def _consume(self, queue: _Queue, handler: Handler) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a memory bus consumer must run as a task")
        while True:
            message = await queue.items.get()
            self._busy.add(task)
            try:
                await self._deliver(queue, message, handler)
            finally:
                self._busy.discard(task)
            if not self._connected:
                return

    async def _deliver(self, queue: _Queue, message: _Message, handler: Handler) -> None:
        message.deliveries += 1
        try:
            envelope = Envelope.from_bytes(message.body)
        except (ValidationError, ValueError) as exc:
            self._dead_letter(message, f"invalid envelope: {exc}")
            return
        error: BaseException | None = None
        try:
            with consumer_span(f"consume {envelope.type}", envelope.traceparent, queue=queue.name):
                if queue.broadcast:
                    await handler(envelope)
                else:
                    error = await call_through_outages(handler, envelope, queue=queue.name)
        except asyncio.CancelledError:
            queue.items.put_nowait(message)  # not acked: hand it back, as a broker would
            raise
        except Exception as exc:
            error = exc
        if queue.broadcast:
            if error is not None:
                log.warning("broadcast handler failed on %s: %r", envelope.type, error)
            return
        action = delivery_action(error)
        if action is DeliveryAction.ACK:
            return
        if action is DeliveryAction.RETRY and message.deliveries < queue.max_deliveries:
            log.warning("retrying %s on %s: %r", envelope.type, queue.name, error)
            try:
                await asyncio.sleep(min(0.05 * message.deliveries, 1.0))
            finally:
                queue.items.put_nowait(message)
            return
        self._dead_letter(message, f"{action.value}: {error!r}")

    def _dead_letter(self, message: _Message, reason: str) -> None:
        log.error("dead-lettering %s: %s", message.type, reason)
        message.death_reason = reason
        self.broker.dead.append(message)
        dead_queue = self.broker.queues.get(DEAD_LETTER_QUEUE)
        if dead_queue is not None:
            dead_queue.items.put_nowait(message)
