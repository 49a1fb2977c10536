"""A batch of stored events published on an aiormq confirm channel as one write.

``aiormq.Channel.basic_publish`` costs about 130-180 us of CPU per message here: a lock,
a deadline, a context manager, a queue put, a future in the channel's future store, one
frame marshal and one socket write per message. The outbox relay publishes hundreds at
once, so :func:`send_batch` takes the channel's lock once, numbers the messages' delivery
tags in order, registers one confirmation future per message where the channel's confirm
and return handling settles it exactly as it would its own publishes (an ack, a
:class:`aiormq.exceptions.PublishError` for a returned ``mandatory`` message, a
``DeliveryError`` for a nack), passes a channel close on to them from ONE future in the
channel's store (:class:`_BatchWatch`), marshals each routing key's method frame once and
queues every frame of the batch as ONE write. That is about 27 us a message (publishes
alone, batches of 200, confirms included).

It relies on these attributes of aiormq 7's ``Channel`` (the pin in ``pyproject.toml``
keeps that major version): ``lock``, ``delivery_tag``, ``confirmations``,
``message_id_delivery_tag``, ``write_queue``, ``number``, ``create_future`` and
``_split_body``, and on ``aiormq.abc.ChannelFrame(payload, should_close)``. A channel
without them (another aiormq) is published message by message through ``basic_publish``
instead — slower, never wrong;
``tests/integration/shared/test_batch_publish.py`` fails if the fast path is not taken.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aio_pika
import aiormq
from aiormq.abc import ChannelFrame
from pamqp.commands import Basic
from pamqp.frame import marshal
from pamqp.header import ContentHeader

from shared.bus.base import EXCHANGE, StoredEvent

__all__ = ["batch_frames_supported", "properties_of", "send_batch"]

_PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)
_CHANNEL_ATTRIBUTES = (
    "lock",
    "delivery_tag",
    "confirmations",
    "message_id_delivery_tag",
    "write_queue",
    "number",
    "create_future",
    "_split_body",
)


def batch_frames_supported(channel: Any) -> bool:
    """True when ``channel`` is a confirm channel :func:`send_batch` can write to at once."""
    return bool(getattr(channel, "publisher_confirms", False)) and all(
        hasattr(channel, name) for name in _CHANNEL_ATTRIBUTES
    )


def properties_of(event: StoredEvent) -> aiormq.spec.Basic.Properties:
    """The AMQP properties a publish of ``event`` carries (as :class:`RabbitBus` sets them)."""
    return _properties(event, str(event.event_id))


def _properties(event: StoredEvent, message_id: str) -> aiormq.spec.Basic.Properties:
    headers: dict[str, Any] = {"version": event.version}
    if event.traceparent:
        headers["traceparent"] = event.traceparent
    return aiormq.spec.Basic.Properties(
        message_id=message_id,
        message_type=event.event_type,
        content_type="application/json",
        delivery_mode=_PERSISTENT,
        timestamp=event.occurred_at,
        correlation_id=str(event.correlation_id) if event.correlation_id else None,
        headers=headers,
    )


async def send_batch(
    channel: aiormq.Channel, events: Sequence[StoredEvent]
) -> list[asyncio.Future[Any]]:
    """Queue a ``mandatory`` persistent publish of every event, in order, to ``EXCHANGE``.

    Returns one future per event that the broker's answer settles (see the module doc);
    the caller awaits them under its own deadline. Frames of an earlier call are always
    queued before a later call's (the channel's lock is FIFO)."""
    if not batch_frames_supported(channel):
        return [
            asyncio.ensure_future(
                channel.basic_publish(
                    event.body,
                    exchange=EXCHANGE,
                    routing_key=event.event_type,
                    properties=properties_of(event),
                    mandatory=True,
                    wait=False,
                )
            )
            for event in events
        ]
    if not events:
        return []
    if channel.is_closed:
        raise aiormq.exceptions.ChannelInvalidStateError(f"{channel!r} is closed")
    number = channel.number
    frames: list[bytes] = []
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in events]
    watch = _BatchWatch(channel, futures)
    # the method frame depends on the routing key only: marshalled (and validated) once
    methods: dict[str, bytes] = {}
    async with channel.lock:
        first_tag = channel.delivery_tag + 1
        for tag, event, confirmation in zip(
            range(first_tag, first_tag + len(events)), events, futures, strict=True
        ):
            message_id = str(event.event_id)
            channel.confirmations[tag] = confirmation
            # how the channel finds a returned message's confirmation
            channel.message_id_delivery_tag[message_id] = tag
            watch.ids.append((message_id, tag))
            method = methods.get(event.event_type)
            if method is None:
                publish = Basic.Publish(
                    exchange=EXCHANGE, routing_key=event.event_type, mandatory=True
                )
                method = methods[event.event_type] = marshal(publish, number)
            frames.append(method)
            header = ContentHeader(
                properties=_properties(event, message_id), body_size=len(event.body)
            )
            frames.append(marshal(header, number))
            frames.extend(marshal(body, number) for body in channel._split_body(event.body))
        channel.delivery_tag = first_tag + len(events) - 1
        try:
            await channel.write_queue.put(
                ChannelFrame(payload=b"".join(frames), should_close=False)
            )
        except BaseException:
            # the broker saw none of these: give their tags back while holding the lock, or
            # every later confirm would be matched to the wrong message
            channel.delivery_tag = first_tag - 1
            for tag, confirmation in enumerate(futures, start=first_tag):
                channel.confirmations.pop(tag, None)
                confirmation.cancel()
            raise
    return futures


class _BatchWatch:
    """What the channel does for each of its own publish futures, done once per batch.

    The channel's future store fails every future it holds when the channel closes; a
    future there per message cost more than the rest of the publish, so the batch holds
    ONE (``closed``) and passes a close on to its messages' futures. When the last of
    them is settled, ``closed`` is resolved (leaving the store) and the batch's message
    ids are forgotten (unless a later publish of the same id has taken one over)."""

    def __init__(self, channel: aiormq.Channel, futures: list[asyncio.Future[Any]]) -> None:
        self.channel = channel
        self.futures = futures
        self.ids: list[tuple[str, int]] = []
        self.pending = len(futures)
        self.closed = channel.create_future()
        self.closed.add_done_callback(self._on_close)
        for future in futures:
            future.add_done_callback(self._settled)

    def _on_close(self, closed: asyncio.Future[Any]) -> None:
        if closed.cancelled() or closed.exception() is None:
            return
        for future in self.futures:
            if not future.done():
                future.set_exception(closed.exception() or ConnectionError("channel closed"))

    def _settled(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled():
            future.exception()  # retrieved: a caller that gave up must not get it logged
        self.pending -= 1
        if self.pending:
            return
        if not self.closed.done():
            self.closed.set_result(None)
        owners = self.channel.message_id_delivery_tag
        for message_id, tag in self.ids:
            if owners.get(message_id) == tag:
                del owners[message_id]
