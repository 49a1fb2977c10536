"""The RabbitMQ bus (aio-pika), with the semantics of :mod:`shared.bus.base`.

Topology (all durable):

- exchange ``aidp.events`` (topic), routing key = event type;
- exchange ``aidp.dead`` (fanout) and queue ``aidp.dead`` bound to it;
- one quorum queue per consuming service, bound to its event types, declared with
  ``x-delivery-limit`` and ``x-dead-letter-exchange: aidp.dead``;
- per :meth:`RabbitBus.subscribe_broadcast`, a classic queue ``aidp.broadcast.<uuid>`` of
  this connection only (exclusive, auto-delete, not durable), bound to its types: every
  bus instance gets every such message; a failing handler's message is logged and acked.

Delivery limit: a quorum queue counts *returns* (``x-delivery-count``) and dead-letters a
message returned more than ``x-delivery-limit`` times, so ``max_deliveries`` handler calls
in all means ``x-delivery-limit = max_deliveries - 1``.

Dead-lettering is RabbitMQ 3.10's default *at-most-once* (the broker does not wait for
``aidp.dead`` to confirm): a broker crash at the exact moment of dead-lettering can lose
that poison message. ``at-least-once`` dead-lettering needs ``x-overflow: reject-publish``
and a feature flag this deployment does not rely on; poison messages are diagnostics, not
business data, so at-most-once is accepted here.

Publishing uses one confirm channel: every publish is ``mandatory`` (unroutable messages
come back and raise :class:`UnroutableError`), persistent, and bounded by
``publish_timeout``. Consumers each get their own channel with QoS ``prefetch``; each
delivery runs the handler in its own task, then is acked, requeued (retry) or rejected
(dead-letter) according to :func:`shared.errors.delivery_action`. Acks decided in one
event-loop turn go out together as one multiple ack where that is safe (:mod:`.acks`).

The connection is robust: after a broker-side close or a network failure aio-pika
reconnects, re-declares the exchanges, queues and bindings and restarts the consumers.
Deliveries unacked when the connection died are redelivered by the broker; publishes in
flight fail with :class:`PublishFailed` (the outbox relay retries them).

A watchdog backs that up, because a consumer that silently stays gone stalls a service
while every publish still succeeds: every ``watch_interval`` seconds it asks the broker
(a passive declare) whether each subscribed queue has a consumer and, when messages wait
there, whether any was delivered lately. When the connection is down, a queue has no
(working) consumer, or publishes keep failing, for ``stall_seconds`` in a row, it drops the
connection and connects and subscribes again from scratch. :meth:`RabbitBus.healthy` is
false meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aiormq.exceptions import ChannelInvalidStateError
from pamqp.commands import Basic
from pydantic import ValidationError

from shared.bus.acks import acks_for, drain_acks
from shared.bus.base import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    EXCHANGE,
    Bus,
    Handler,
    PublishFailed,
    PublishTimeout,
    StoredEvent,
    UnroutableError,
    call_through_outages,
)
from shared.bus.batch_publish import send_batch
from shared.errors import DeliveryAction, delivery_action
from shared.events import Envelope
from shared.telemetry import consumer_span, producer_span, scrub

__all__ = ["RabbitBus", "queue_arguments"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_SETTLE_TIMEOUT = 10.0  # an ack that takes longer is on a dead channel: redelivered anyway


def queue_arguments(max_deliveries: int) -> dict[str, Any]:
    """Arguments of a service queue: quorum, bounded redelivery, dead-letter to aidp.dead."""
    if max_deliveries < 1:
        raise ValueError("max_deliveries must be at least 1")
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": max_deliveries - 1,
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
    }


def _outcome(event: StoredEvent, task: asyncio.Future[Any], timeout: float) -> BaseException | None:
    """None for a confirmed publish, else the bus error that says why not."""
    if not task.done():
        task.cancel()
        task.add_done_callback(_consume_outcome)
        return PublishTimeout(f"no confirm for {event.event_type} {event.event_id} in {timeout}s")
    if task.cancelled():
        return PublishFailed(f"publish of {event.event_type} {event.event_id} was cancelled")
    error = task.exception()
    if isinstance(error, aiormq.exceptions.PublishError):
        return UnroutableError(f"no queue is bound for {event.event_type}")
    if error is not None:
        return PublishFailed(f"publish of {event.event_type} {event.event_id} failed: {error!r}")
    if not isinstance(task.result(), Basic.Ack):
        return PublishFailed(f"the broker refused {event.event_type} {event.event_id} (nack)")
    return None


async def _bounded(awaitable: Awaitable[_T], timeout: float) -> _T:
    """Await ``awaitable`` for at most ``timeout`` seconds, whatever it does with a cancel.

    ``asyncio.timeout`` and ``wait_for`` wait for the cancelled work to unwind; network
    code that catches the cancellation (a half-closed channel awaiting a frame) would then
    hold the caller forever. Here the work runs as its own task that is abandoned (and
    cancelled) at the deadline, so the caller always gets control back."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        task.add_done_callback(_consume_outcome)
        raise TimeoutError(f"no answer in {timeout}s")
    return task.result()


def _consume_outcome(task: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned task's outcome so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


def _retry_backoff(deliveries: int) -> float:
    """Pause before handing a failed message back, growing with its deliveries."""
    return min(0.05 * 2 ** (deliveries - 1), 2.0)


@dataclass(frozen=True)
class _Subscription:
    """What :meth:`RabbitBus.subscribe` was asked for, kept to subscribe again after a reset."""

    queue: str
    event_types: tuple[str, ...]
    handler: Handler
    prefetch: int
    max_deliveries: int
    broadcast: bool = False


class RabbitBus(Bus):
    """A :class:`Bus` on RabbitMQ ≥ 3.10 through one robust aio-pika connection."""

    def __init__(
        self,
        url: str,
        *,
        publish_timeout: float = 5.0,
        prefetch: int = 16,
        reconnect_interval: float = 1.0,
        close_grace: float = 10.0,
        watch_interval: float = 5.0,
        stall_seconds: float = 30.0,
    ) -> None:
        self.url = url
        self.close_grace = close_grace
        self.publish_timeout = publish_timeout
        self.prefetch = prefetch
        self.reconnect_interval = reconnect_interval
        self.watch_interval = watch_interval
        self.stall_seconds = stall_seconds
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._consumers: list[tuple[AbstractChannel, AbstractQueue, str]] = []
        self._subscriptions: list[_Subscription] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._connect_lock = asyncio.Lock()
        self._watchdog: asyncio.Task[None] | None = None
        self._stalled_since: float | None = None
        self._publish_failing_since: float | None = None  # first failure of the current streak
        self._activity: dict[str, float] = {}  # queue -> last delivery started or settled
        self.reconnects = 0  # how often the robust connection came back (metrics, tests)
        self.resets = 0  # how often the watchdog rebuilt the connection (metrics, tests)

    def __repr__(self) -> str:
        return f"RabbitBus({scrub(self.url)!r})"

    # -- lifecycle ----------------------------------------------------------------------

    async def connect(self) -> None:
        async with self._connect_lock:
            await self._open()
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch(), name="rabbit-bus-watchdog")

    async def _open(self) -> None:
        """Connect and declare the topology (the caller holds ``_connect_lock``)."""
        if self._connection is not None:
            return
        connection = await aio_pika.connect_robust(
            self.url,
            reconnect_interval=self.reconnect_interval,
            client_properties={"connection_name": "aidp"},
        )
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            self._exchange = await self._declare_topology(channel)
        except BaseException:
            await connection.close()
            raise
        connection.reconnect_callbacks.add(self._on_reconnect)
        self._connection, self._publish_channel = connection, channel

    def _on_reconnect(self, *_args: object) -> None:
        self.reconnects += 1
        log.warning("RabbitMQ connection restored (%d reconnects)", self.reconnects)

    async def _declare_topology(self, channel: AbstractChannel) -> AbstractExchange:
        exchange = await channel.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        dead = await channel.declare_exchange(
            DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
        )
        dead_queue = await channel.declare_queue(
            DEAD_LETTER_QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dead_queue.bind(dead)
        return exchange

    async def close(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
        async with self._connect_lock:
            await self._shutdown(grace=self.close_grace)
        self._subscriptions.clear()

    async def _shutdown(self, *, grace: float) -> None:
        """Cancel consumers, let in-flight handlers finish for ``grace`` seconds, close."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        for _channel, queue, tag in self._consumers:
            try:
                await _bounded(queue.cancel(tag), _SETTLE_TIMEOUT)
            except Exception as exc:  # the channel may be gone already
                log.debug("cancelling consumer on %s: %r", queue.name, exc)
        if self._inflight:
            # Running handlers may finish (and ack) for close_grace seconds; the rest are
            # cancelled, which hands their messages back to the broker.
            inflight = list(self._inflight)
            _done, pending = await asyncio.wait(inflight, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=_SETTLE_TIMEOUT)
        await drain_acks(_SETTLE_TIMEOUT)
        self._consumers.clear()
        self._publish_channel = self._exchange = None
        try:
            await _bounded(connection.close(), _SETTLE_TIMEOUT)
        except Exception as exc:  # a connection that cannot even close is left behind
            log.warning("closing the RabbitMQ connection: %r", exc)

    async def healthy(self) -> bool:
        connection, channel = self._connection, self._publish_channel
        return bool(
            connection is not None
            and not connection.is_closed
            and connection.connected.is_set()
            and channel is not None
            and not channel.is_closed
            and self._stalled_since is None
        )

    # -- watchdog ------------------------------------------------------------------------

    async def _watch(self) -> None:
        """Rebuild the connection when consuming has stalled for ``stall_seconds``."""
        while True:
            await asyncio.sleep(self.watch_interval)
            try:
                ok = await _bounded(self._working(), self.watch_interval * 2)
            except Exception as exc:  # includes the timeout: the broker did not answer
                log.debug("RabbitMQ watchdog probe failed: %r", exc)
                ok = False
            if ok:
                self._stalled_since = None
                continue
            clock = time.monotonic()
            if self._stalled_since is None:
                self._stalled_since = clock
            if clock - self._stalled_since >= self.stall_seconds:
                log.error(
                    "RabbitMQ consuming stalled for %.0fs; reconnecting from scratch",
                    clock - self._stalled_since,
                )
                try:
                    await self._reset()
                except Exception as exc:  # the broker is still away: try again next tick
                    log.warning("RabbitMQ reset failed (will retry): %r", exc)
                else:
                    self._stalled_since = None

    async def _working(self) -> bool:
        """Whether the connection is up, publishing works and the broker sees a consumer
        (receiving what waits) on every queue."""
        connection = self._connection
        if connection is None or connection.is_closed or not connection.connected.is_set():
            return False
        failing = self._publish_failing_since
        if failing is not None and time.monotonic() - failing >= self.watch_interval:
            log.warning("RabbitMQ publishes failing for %.0fs", time.monotonic() - failing)
            return False
        if not self._subscriptions:
            return True
        channel = await connection.channel(publisher_confirms=False)
        try:
            raw = cast(aiormq.Channel, await channel.get_underlay_channel())
            for subscription in self._subscriptions:
                queue = subscription.queue
                declared = await raw.queue_declare(queue, passive=True)
                if not declared.consumer_count:
                    log.warning("RabbitMQ queue %s has no consumer", queue)
                    return False
                idle = time.monotonic() - self._activity.get(queue, 0.0)
                if declared.message_count and idle > self.stall_seconds:
                    # Messages wait, yet nothing was delivered to (or settled by) this
                    # consumer for a while: it is registered but not consuming.
                    log.warning(
                        "RabbitMQ queue %s: %d messages ready, no delivery for %.0fs",
                        queue,
                        declared.message_count,
                        idle,
                    )
                    return False
            return True
        finally:
            await channel.close()

    async def _reset(self) -> None:
        """Drop the connection (unacked deliveries go back to the queues) and connect and
        subscribe again."""
        async with self._connect_lock:
            # Handlers still running would ack on a dead channel: give them little time.
            await self._shutdown(grace=min(self.close_grace, 2.0))
            await _bounded(self._open(), 30.0)
            self._publish_failing_since = None
            for subscription in self._subscriptions:
                await self._consume(subscription)
        self.resets += 1
        log.warning("RabbitMQ connection rebuilt (%d resets)", self.resets)

    # -- publishing -----------------------------------------------------------------------

    def _message(self, envelope: Envelope) -> aio_pika.Message:
        headers: dict[str, Any] = {"version": envelope.version}
        if envelope.traceparent:
            headers["traceparent"] = envelope.traceparent
        return aio_pika.Message(
            envelope.to_bytes(),
            message_id=str(envelope.id),
            type=envelope.type,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            timestamp=envelope.occurred_at,
            correlation_id=str(envelope.correlation_id) if envelope.correlation_id else None,
            headers=headers,
        )

    async def publish(self, envelope: Envelope) -> None:
        try:
            await self._publish_once(envelope)
        except UnroutableError:
            self._publish_failing_since = None  # the broker answered: the channel works
            raise
        except Exception:
            if self._publish_failing_since is None:
                self._publish_failing_since = time.monotonic()
            raise
        self._publish_failing_since = None

    async def _publish_once(self, envelope: Envelope) -> None:
        exchange = self._exchange
        if exchange is None:
            raise PublishFailed("RabbitMQ bus is not connected")
        try:
            with producer_span(f"publish {envelope.type}", envelope.traceparent, bus="rabbitmq"):
                result = await _bounded(
                    exchange.publish(self._message(envelope), envelope.type, mandatory=True),
                    self.publish_timeout,
                )
        except TimeoutError as exc:
            raise PublishTimeout(
                f"no confirm for {envelope.type} {envelope.id} in {self.publish_timeout}s"
            ) from exc
        except aiormq.exceptions.PublishError as exc:
            raise UnroutableError(f"no queue is bound for {envelope.type}") from exc
        except (aiormq.exceptions.DeliveryError, *aio_pika.exceptions.CONNECTION_EXCEPTIONS) as exc:
            raise PublishFailed(
                f"publish of {envelope.type} {envelope.id} failed: {exc!r}"
            ) from exc
        if not isinstance(result, Basic.Ack):  # a returned message, should on_return_raises change
            raise UnroutableError(f"no queue is bound for {envelope.type}")

    async def publish_many(self, envelopes: Sequence[Envelope]) -> list[BaseException | None]:
        """All publishes share the confirm channel, so their confirms are in flight together."""
        return await self.publish_stored([StoredEvent.of(e) for e in envelopes])

    async def publish_stored(self, events: Sequence[StoredEvent]) -> list[BaseException | None]:
        """Publish serialised envelopes straight through aiormq, all their frames in one
        write and their confirms in flight together under one deadline for the batch (not
        a timer, span, lock and write per message: that per-message work, not the broker,
        bounded the outbox relay; :mod:`.batch_publish`). A later call's messages reach the
        broker after an earlier call's."""
        if not events:
            return []
        channel = self._publish_channel
        if channel is None or self._exchange is None:
            return [PublishFailed("RabbitMQ bus is not connected") for _ in events]
        try:
            raw = cast(aiormq.Channel, await channel.get_underlay_channel())
        except Exception as exc:  # closed or reconnecting
            return [PublishFailed(f"publish channel unavailable: {exc!r}") for _ in events]
        with producer_span(f"publish {len(events)} events", events[0].traceparent, bus="rabbitmq"):
            try:
                pending = await send_batch(raw, events)
            except Exception as exc:  # the channel closed under us
                return [PublishFailed(f"publish channel unavailable: {exc!r}") for _ in events]
            await asyncio.wait(pending, timeout=self.publish_timeout)
        results = [
            _outcome(event, task, self.publish_timeout)
            for event, task in zip(events, pending, strict=True)
        ]
        if any(r is None or isinstance(r, UnroutableError) for r in results):
            self._publish_failing_since = None  # the broker answered: the channel works
        elif self._publish_failing_since is None:
            self._publish_failing_since = time.monotonic()
        return results

    # -- consuming ------------------------------------------------------------------------

    async def _declare_queue(
        self,
        channel: AbstractChannel,
        queue: str,
        event_types: Sequence[str],
        max_deliveries: int,
        *,
        broadcast: bool = False,
    ) -> AbstractQueue:
        if broadcast:
            declared = await channel.declare_queue(
                queue, durable=False, exclusive=True, auto_delete=True
            )
        else:
            declared = await channel.declare_queue(
                queue, durable=True, arguments=queue_arguments(max_deliveries)
            )
        for event_type in event_types:
            await declared.bind(EXCHANGE, routing_key=event_type)
        return declared

    async def declare(
        self, queue: str, event_types: Sequence[str], *, max_deliveries: int = 5
    ) -> None:
        if self._publish_channel is None:
            raise PublishFailed("RabbitMQ bus is not connected")
        await self._declare_queue(self._publish_channel, queue, event_types, max_deliveries)

    async def subscribe(
        self,
        queue: str,
        event_types: Sequence[str],
        handler: Handler,
        *,
        prefetch: int | None = None,
        max_deliveries: int = 5,
    ) -> None:
        if self._connection is None:
            raise PublishFailed("RabbitMQ bus is not connected")
        subscription = _Subscription(
            queue, tuple(event_types), handler, prefetch or self.prefetch, max_deliveries
        )
        async with self._connect_lock:
            await self._consume(subscription)
        self._subscriptions.append(subscription)

    async def subscribe_broadcast(self, event_types: Sequence[str], handler: Handler) -> None:
        if self._connection is None:
            raise PublishFailed("RabbitMQ bus is not connected")
        subscription = _Subscription(
            f"aidp.broadcast.{uuid.uuid4().hex}",
            tuple(event_types),
            handler,
            self.prefetch,
            1,
            broadcast=True,
        )
        async with self._connect_lock:
            await self._consume(subscription)
        self._subscriptions.append(subscription)

    async def _consume(self, subscription: _Subscription) -> None:
        """Open a channel for ``subscription``, declare its queue and start consuming."""
        if self._connection is None:
            raise PublishFailed("RabbitMQ bus is not connected")
        queue, handler = subscription.queue, subscription.handler
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=subscription.prefetch)
        declared = await self._declare_queue(
            channel,
            queue,
            subscription.event_types,
            subscription.max_deliveries,
            broadcast=subscription.broadcast,
        )
        deliver = self._deliver_broadcast if subscription.broadcast else self._deliver

        async def on_message(message: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._inflight.add(task)
            self._activity[queue] = time.monotonic()
            try:
                await deliver(queue, message, handler)
            finally:
                self._activity[queue] = time.monotonic()
                if task is not None:
                    self._inflight.discard(task)

        tag = await declared.consume(on_message, no_ack=False)
        self._activity[queue] = time.monotonic()
        self._consumers.append((channel, declared, tag))

    async def _deliver(
        self, queue: str, message: AbstractIncomingMessage, handler: Handler
    ) -> None:
        try:
            envelope = Envelope.from_bytes(message.body)
        except (ValidationError, ValueError) as exc:
            log.error("dead-lettering an invalid message on %s: %s", queue, exc)
            await self._settle_alone(message, message.reject(requeue=False))
            return
        error: BaseException | None = None
        traceparent = envelope.traceparent or _header(message, "traceparent")
        try:
            with consumer_span(f"consume {envelope.type}", traceparent, queue=queue):
                error = await call_through_outages(handler, envelope, queue=queue)
        except asyncio.CancelledError:
            await self._settle_alone(message, message.nack(requeue=True))
            raise
        except Exception as exc:
            error = exc
        action = delivery_action(error)
        if action is DeliveryAction.ACK:
            _ack(message)
        elif action is DeliveryAction.RETRY:
            deliveries = _delivery_count(message) + 1
            log.warning(
                "retrying %s on %s (delivery %d): %r", envelope.type, queue, deliveries, error
            )
            await asyncio.sleep(_retry_backoff(deliveries))
            await self._settle_alone(message, message.nack(requeue=True))
        else:
            log.error("dead-lettering %s on %s: %r", envelope.type, queue, error)
            await self._settle_alone(message, message.reject(requeue=False))

    async def _deliver_broadcast(
        self, queue: str, message: AbstractIncomingMessage, handler: Handler
    ) -> None:
        """A notification: handled once, acked whatever happens (no retry, no dead-letter)."""
        try:
            envelope = Envelope.from_bytes(message.body)
            with consumer_span(f"consume {envelope.type}", envelope.traceparent, queue=queue):
                await handler(envelope)
        except asyncio.CancelledError:
            _ack(message)
            raise
        except Exception as exc:
            log.warning("broadcast handler failed on %s: %r", queue, exc)
        _ack(message)

    @staticmethod
    async def _settle_alone(message: AbstractIncomingMessage, result: Any) -> None:
        """Await a nack/reject of ``message``, then let batched acks pass its tag; a dead
        channel means the broker redelivers anyway."""
        try:
            await _bounded(result, _SETTLE_TIMEOUT)
        except Exception as exc:
            log.warning("could not settle a delivery (it will be redelivered): %r", exc)
        with contextlib.suppress(ChannelInvalidStateError):
            acks_for(message.channel).settled(message.delivery_tag or 0)


def _ack(message: AbstractIncomingMessage) -> None:
    """Acknowledge ``message`` with the other acks of this loop turn (:mod:`.acks`)."""
    try:
        acks_for(message.channel).ack(message.delivery_tag or 0)
    except ChannelInvalidStateError:
        log.warning("could not acknowledge a delivery (its channel closed): redelivered")


def _header(message: AbstractIncomingMessage, name: str) -> str | None:
    value = (message.headers or {}).get(name)
    if isinstance(value, bytes):
        return value.decode()
    return value if isinstance(value, str) else None


def _delivery_count(message: AbstractIncomingMessage) -> int:
    """How many times the broker handed this message back before (quorum queues)."""
    value = (message.headers or {}).get("x-delivery-count", 0)
    return int(value) if isinstance(value, int) else 0
