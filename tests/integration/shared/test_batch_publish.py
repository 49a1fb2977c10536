"""Batched publishes (``shared.bus.batch_publish``) against real RabbitMQ: the fast path is
taken with the installed aiormq, order and wire properties are kept, each message gets its
own outcome, and a batch that never reached the broker leaves the channel's numbering
intact."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest

from shared.bus import EXCHANGE, PublishFailed, UnroutableError
from shared.bus.base import StoredEvent
from shared.bus.batch_publish import batch_frames_supported, send_batch
from shared.bus.rabbit import RabbitBus
from shared.events import Envelope, ProjectCreated, RunCancelled, new_event

pytestmark = pytest.mark.integration


def created(n: int, *, padding: int = 0) -> Envelope:
    return new_event(ProjectCreated(owner_id=uuid.uuid4(), spec={"n": n, "pad": "x" * padding}))


@pytest.fixture
async def bus(amqp_url: str) -> AsyncIterator[RabbitBus]:
    opened = RabbitBus(amqp_url, publish_timeout=10)
    await opened.connect()
    yield opened
    await opened.close()


@pytest.fixture
async def sink(amqp_url: str, bus: RabbitBus) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    """A plain queue bound to ProjectCreated, read with aio-pika (not through the bus)."""
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    exchange = await channel.get_exchange(EXCHANGE)
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, "ProjectCreated")
    yield queue
    await connection.close()


async def received(queue: aio_pika.abc.AbstractQueue, count: int) -> list[Any]:
    messages = []
    async with queue.iterator() as it:
        async with asyncio.timeout(30):
            async for message in it:
                await message.ack()
                messages.append(message)
                if len(messages) == count:
                    break
    return messages


async def raw_channel(bus: RabbitBus) -> Any:
    assert bus._publish_channel is not None
    return await bus._publish_channel.get_underlay_channel()


async def test_the_installed_aiormq_takes_the_one_write_path(bus: RabbitBus) -> None:
    """If an aiormq upgrade drops what the fast path uses, this fails (the slow path would
    still be correct, so nothing else would notice)."""
    assert batch_frames_supported(await raw_channel(bus))


async def test_a_batch_arrives_in_order_with_its_properties(
    bus: RabbitBus, sink: aio_pika.abc.AbstractQueue
) -> None:
    # one body larger than a frame (frame_max 128 KiB) is split and joined again
    batch = [created(n, padding=300_000 if n == 7 else 0) for n in range(250)]
    assert await bus.publish_many(batch) == [None] * 250
    messages = await received(sink, 250)
    assert [m.message_id for m in messages] == [str(e.id) for e in batch]
    assert [Envelope.from_bytes(m.body) for m in messages] == batch
    first = messages[0]
    assert first.type == "ProjectCreated"
    assert first.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert first.headers["version"] == batch[0].version


async def test_each_message_gets_its_own_outcome_and_later_batches_still_match(
    bus: RabbitBus, sink: aio_pika.abc.AbstractQueue
) -> None:
    # nothing is bound for RunCancelled in this vhost: those two come back
    batch = [
        created(0),
        new_event(RunCancelled()),
        created(1),
        new_event(RunCancelled()),
        created(2),
    ]
    results = await bus.publish_many(batch)
    assert [type(r) for r in results] == [
        type(None),
        UnroutableError,
        type(None),
        UnroutableError,
        type(None),
    ]
    # the channel's confirms still line up with its messages afterwards
    assert await bus.publish_many([created(n) for n in range(3, 50)]) == [None] * 47
    await bus.publish(created(50))
    assert len(await received(sink, 51)) == 51


async def test_a_batch_cancelled_before_its_write_gives_its_delivery_tags_back(
    bus: RabbitBus, sink: aio_pika.abc.AbstractQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = await raw_channel(bus)
    assert await bus.publish_many([created(0)]) == [None]
    tag_before = channel.delivery_tag

    async def cancelled_put(item: Any) -> None:
        raise asyncio.CancelledError

    monkeypatch.setattr(channel.write_queue, "put", cancelled_put)
    lost = [StoredEvent.of(created(n)) for n in range(1, 20)]
    with pytest.raises(asyncio.CancelledError):
        await send_batch(channel, lost)
    monkeypatch.undo()
    assert channel.delivery_tag == tag_before
    assert not any(tag > tag_before for tag in channel.confirmations)
    # were the 19 tags kept, every later confirm would settle the wrong future (or none)
    assert await bus.publish_many([created(n) for n in range(20, 40)]) == [None] * 20
    assert len(await received(sink, 21)) == 21


async def test_a_closed_channel_fails_the_whole_batch_without_raising(bus: RabbitBus) -> None:
    channel = await raw_channel(bus)
    await channel.close()
    results = await bus.publish_many([created(n) for n in range(5)])
    assert all(isinstance(r, PublishFailed) for r in results), results


async def test_a_channel_closing_under_a_batch_fails_its_messages_at_once(
    bus: RabbitBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch's messages are not in the channel's future store one by one: the batch's
    one entry there must pass the close on, or they would wait out the publish deadline."""
    channel = await raw_channel(bus)
    held: list[Any] = []

    async def hold(item: Any) -> None:  # the frames never reach the broker: no confirm comes
        held.append(item)

    monkeypatch.setattr(channel.write_queue, "put", hold)
    futures = await send_batch(channel, [StoredEvent.of(created(n)) for n in range(10)])
    monkeypatch.undo()
    assert len(held) == 1 and not any(f.done() for f in futures)
    await channel.close()
    _, pending = await asyncio.wait(futures, timeout=5)
    assert not pending, "a close left the batch's messages waiting"
    assert all(not f.cancelled() and f.exception() is not None for f in futures)
