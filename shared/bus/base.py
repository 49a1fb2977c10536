"""The bus contract shared by the RabbitMQ and in-memory implementations.

Semantics (both implementations; ``tests/integration/shared/test_bus_contract.py``):

- ``publish`` returns only once the broker has taken responsibility for the message
  (publisher confirm); it raises :class:`UnroutableError` if no queue is bound for the
  type, :class:`PublishTimeout` if no confirm arrives in time, and :class:`PublishFailed`
  on a nack or a lost connection (all transient). Messages are persistent.
- ``publish_many`` keeps many confirms in flight and reports one outcome per envelope;
  ``publish_stored`` does the same for envelopes already serialised (:class:`StoredEvent`,
  the outbox's rows), under one deadline for the whole batch.
- A subscription is a durable queue named after the consuming service, bound to the event
  types it names. Each message is acknowledged only after the handler returns.
- If the handler raises, :func:`shared.errors.delivery_action` decides: retry (redeliver,
  at most ``max_deliveries`` times in all) or dead-letter at once. Messages past the limit
  or refused go to the ``aidp.dead`` queue; nothing is silently dropped.
- While a dependency is down (:func:`shared.errors.dependency_outage`: the database or
  Vault), a failing handler does not spend the message's delivery budget: the consumer holds
  the message unacknowledged and calls the handler again with backoff (up to
  :data:`OUTAGE_HOLD_SECONDS`), so an outage of a minute loses and dead-letters nothing.
- Messages whose body is not a valid envelope are dead-lettered at once.
- Delivery is at least once: handlers dedupe on ``envelope.id``
  (:func:`shared.outbox.claim_inbox`).
- A *broadcast* subscription (:meth:`Bus.subscribe_broadcast`) gets every message of its
  types on a queue of its own, for this bus instance only, that lives as long as the
  connection (RabbitMQ: exclusive, auto-delete): every replica of a service sees every
  such message, none sees those published while it was away. It suits notifications that
  update in-memory state (revoked sessions, changed roles). A failing broadcast handler is
  logged and the message dropped: no retry, no dead-letter.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from shared.errors import TransientError, dependency_outage
from shared.events import Envelope

__all__ = [
    "DEAD_LETTER_QUEUE",
    "EXCHANGE",
    "Bus",
    "Handler",
    "PublishFailed",
    "PublishTimeout",
    "StoredEvent",
    "OUTAGE_HOLD_SECONDS",
    "UnroutableError",
    "call_through_outages",
]

log = logging.getLogger(__name__)

#: How long a consumer holds a message while a dependency is down before the ordinary
#: retry/dead-letter rules apply again.
OUTAGE_HOLD_SECONDS = 600.0

EXCHANGE = "aidp.events"
DEAD_LETTER_EXCHANGE = "aidp.dead"
DEAD_LETTER_QUEUE = "aidp.dead"

Handler = Callable[[Envelope], Awaitable[None]]


async def call_through_outages(
    handler: Handler, envelope: Envelope, *, queue: str, hold_seconds: float = OUTAGE_HOLD_SECONDS
) -> BaseException | None:
    """Call ``handler``; while it fails because a dependency is down, wait (backoff from
    0.25 s to 5 s) and call it again, up to ``hold_seconds``. Returns the last error (None on
    success). Cancellation propagates."""
    # Hand-written, not stamina: the outcome is the last error, returned for the caller's
    # ack/retry/dead-letter policy (not raised), no wait may run past the hold (stamina's
    # timeout only stops after an attempt that ends past it), and each hold is logged with
    # the unavailable dependency's name.
    deadline = time.monotonic() + hold_seconds
    pause = 0.25
    while True:
        try:
            await handler(envelope)
            return None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            dependency = dependency_outage(exc)
            if dependency is None or time.monotonic() + pause > deadline:
                return exc
            log.warning(
                "%s on %s: the %s is unavailable; holding it and trying again in %.1f s",
                envelope.type,
                queue,
                dependency,
                pause,
            )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)


class UnroutableError(TransientError):
    """No queue is bound for the event type: the broker returned the message."""


class PublishFailed(TransientError):
    """The broker refused the publish (nack) or the connection was lost before its confirm."""


class PublishTimeout(TransientError):
    """The broker did not confirm the publish in time; it may or may not have it."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An envelope already serialised (``body``) with the fields a broker routes and labels
    it by, so publishing it needs no parse (the outbox stores these fields in its row)."""

    event_id: uuid.UUID
    event_type: str
    version: int
    body: bytes
    occurred_at: datetime
    correlation_id: uuid.UUID | None = None
    traceparent: str | None = None

    @classmethod
    def of(cls, envelope: Envelope) -> StoredEvent:
        return cls(
            event_id=envelope.id,
            event_type=envelope.type,
            version=envelope.version,
            body=envelope.to_bytes(),
            occurred_at=envelope.occurred_at,
            correlation_id=envelope.correlation_id,
            traceparent=envelope.traceparent,
        )


class Bus(ABC):
    """Publish envelopes to the topic exchange and consume them from durable queues."""

    @abstractmethod
    async def connect(self) -> None:
        """Open connections and declare the exchange and dead-letter queue. Idempotent."""

    @abstractmethod
    async def close(self) -> None:
        """Stop consuming (in-flight handlers finish) and close connections."""

    @abstractmethod
    async def publish(self, envelope: Envelope) -> None:
        """Publish one envelope and wait for the broker's confirm (see module docstring)."""

    async def publish_many(self, envelopes: Sequence[Envelope]) -> list[BaseException | None]:
        """Publish several envelopes with their confirms in flight together.

        Returns, per envelope and in order, None when confirmed or the exception that
        stopped it. The default publishes one at a time; implementations override it.
        """
        results: list[BaseException | None] = []
        for envelope in envelopes:
            try:
                await self.publish(envelope)
                results.append(None)
            except Exception as exc:  # reported per envelope, the caller decides
                results.append(exc)
        return results

    async def publish_stored(self, events: Sequence[StoredEvent]) -> list[BaseException | None]:
        """:meth:`publish_many` for serialised envelopes. The default parses them back;
        brokers override it to publish the bytes as they are."""
        return await self.publish_many([Envelope.from_bytes(e.body) for e in events])

    @abstractmethod
    async def subscribe(
        self,
        queue: str,
        event_types: Sequence[str],
        handler: Handler,
        *,
        prefetch: int = 16,
        max_deliveries: int = 5,
    ) -> None:
        """Declare ``queue`` bound to ``event_types`` and start consuming it with ``handler``.

        Returns once consuming has started. ``max_deliveries`` bounds redeliveries of a
        failing message before it is dead-lettered.
        """

    @abstractmethod
    async def subscribe_broadcast(self, event_types: Sequence[str], handler: Handler) -> None:
        """Consume every message of ``event_types`` on a queue of this instance's own (see
        the module docstring); returns once consuming has started."""

    @abstractmethod
    async def declare(
        self, queue: str, event_types: Sequence[str], *, max_deliveries: int = 5
    ) -> None:
        """Declare ``queue`` and its bindings without consuming (so publishes route)."""

    @abstractmethod
    async def healthy(self) -> bool:
        """True when the bus is connected and usable (for readiness probes)."""

    async def __aenter__(self) -> Bus:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
