"""What only real RabbitMQ can show: the declared topology, wire properties, a consumer
process killed mid-message, and connections closed by the broker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import aio_pika
import httpx
import pytest

from shared.bus import EXCHANGE, PublishFailed, PublishTimeout
from shared.bus.rabbit import RabbitBus
from shared.errors import TransientError
from shared.events import Envelope, ProjectCreated, new_event
from tests.integration.shared.harness import (
    close_vhost_connections,
    eventually,
    management,
    vhost_of,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def created(n: int = 0) -> Envelope:
    return new_event(ProjectCreated(owner_id=uuid.uuid4(), spec={"n": n}))


@pytest.fixture
async def buses(amqp_url: str) -> AsyncIterator[list[RabbitBus]]:
    """Buses a test opened; closed at teardown."""
    opened: list[RabbitBus] = []
    yield opened
    for bus in opened:
        await bus.close()


async def connected(amqp_url: str, buses: list[RabbitBus], **options: float) -> RabbitBus:
    bus = RabbitBus(amqp_url, **options)  # type: ignore[arg-type]
    await bus.connect()
    buses.append(bus)
    return bus


async def test_service_queues_are_quorum_queues_with_a_delivery_limit(
    amqp_url: str, buses: list[RabbitBus]
) -> None:
    bus = await connected(amqp_url, buses)
    await bus.declare("svc", ["ProjectCreated"], max_deliveries=4)
    api, auth = management(amqp_url)
    vhost = quote(vhost_of(amqp_url), safe="")
    info = httpx.get(f"{api}/queues/{vhost}/svc", auth=auth, timeout=10).json()
    assert info["type"] == "quorum"
    assert info["durable"] is True
    assert info["arguments"]["x-delivery-limit"] == 3  # 4 deliveries = 1 + 3 returns
    assert info["arguments"]["x-dead-letter-exchange"] == "aidp.dead"
    exchange = httpx.get(f"{api}/exchanges/{vhost}/{EXCHANGE}", auth=auth, timeout=10).json()
    assert (exchange["type"], exchange["durable"]) == ("topic", True)


async def test_messages_are_persistent_and_carry_trace_and_identity_headers(
    amqp_url: str, buses: list[RabbitBus]
) -> None:
    bus = await connected(amqp_url, buses)
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(EXCHANGE, "ProjectCreated")
        sent = created().model_copy(
            update={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
        )
        await bus.publish(sent)
        message = await queue.get(timeout=10)
        await message.ack()
    finally:
        await connection.close()
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.message_id == str(sent.id)
    assert message.type == "ProjectCreated"
    assert message.content_type == "application/json"
    assert message.headers["traceparent"] == sent.traceparent
    assert Envelope.from_bytes(message.body) == sent


async def test_a_publish_without_a_confirm_in_time_raises(
    amqp_url: str, buses: list[RabbitBus]
) -> None:
    bus = await connected(amqp_url, buses, publish_timeout=1e-9)
    await bus.declare("svc", ["ProjectCreated"])
    with pytest.raises(PublishTimeout):
        await bus.publish(created())


async def test_publishing_on_a_closed_bus_raises_a_transient_error(amqp_url: str) -> None:
    bus = RabbitBus(amqp_url)
    with pytest.raises(PublishFailed):
        await bus.publish(created())
    assert not await bus.healthy()


@pytest.mark.slow
async def test_a_consumer_process_killed_mid_message_gets_it_redelivered(
    amqp_url: str, buses: list[RabbitBus], tmp_path: Path
) -> None:
    bus = await connected(amqp_url, buses)
    await bus.declare("crash", ["ProjectCreated"])
    marker = tmp_path / "marker"
    marker.touch()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.shared.consumer_proc"]
        + [amqp_url, "crash", "ProjectCreated", str(marker)],
        cwd=ROOT,
    )
    try:
        await eventually(lambda: "ready" in marker.read_text(), timeout=60, what="the consumer")
        sent = created()
        await bus.publish(sent)
        await eventually(
            lambda: f"got {sent.id}" in marker.read_text(), what="the consumer's delivery"
        )
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    seen: list[Envelope] = []

    async def record(envelope: Envelope) -> None:
        seen.append(envelope)

    await bus.subscribe("crash", ["ProjectCreated"], record)
    await eventually(lambda: [e.id for e in seen] == [sent.id], what="the redelivery")


@pytest.mark.slow
async def test_connections_closed_by_the_broker_are_recovered_with_nothing_lost(
    amqp_url: str, buses: list[RabbitBus]
) -> None:
    """A stream of publishes runs while the broker closes every connection of the vhost."""
    before, after = 100, 100  # messages published before the close starts / after it ends
    received: Counter[uuid.UUID] = Counter()

    async def record(envelope: Envelope) -> None:
        received[envelope.id] += 1

    consumer = await connected(amqp_url, buses)
    await consumer.subscribe("stream", ["ProjectCreated"], record, prefetch=8)
    publisher = await connected(amqp_url, buses, publish_timeout=5.0)
    sent: list[Envelope] = []
    closer: asyncio.Task[int] | None = None
    after_close = retries = 0
    while after_close < after:
        envelope = created(len(sent))
        while True:  # what the outbox relay does: retry until confirmed
            try:
                await publisher.publish(envelope)
                break
            except TransientError:
                retries += 1
                await asyncio.sleep(0.1)
        sent.append(envelope)
        if len(sent) == before:
            closer = asyncio.create_task(
                asyncio.to_thread(close_vhost_connections, amqp_url, expect=2)
            )
        if closer is not None and closer.done():
            after_close += 1
        await asyncio.sleep(0.005)  # a stream, not a burst
    assert closer is not None and closer.result() >= 1

    await eventually(
        lambda: consumer.reconnects >= 1 and publisher.reconnects >= 1,
        what="both connections to be closed and restored",
    )
    await eventually(
        lambda: set(received) == {e.id for e in sent}, timeout=60, what="every message"
    )
    duplicates = sum(received.values()) - len(sent)
    print(f"\n{len(sent)} messages, {retries} publish retries, {duplicates} duplicates")
    assert await consumer.healthy() and await publisher.healthy()


async def test_a_consumer_lost_without_notice_is_rebuilt_by_the_watchdog(
    amqp_url: str, buses: list[RabbitBus]
) -> None:
    """The broker forgets the consumer while aio-pika still believes in it (no Basic.Cancel
    reaches the client): robust reconnection has nothing to react to, the watchdog does."""
    received: list[uuid.UUID] = []

    async def record(envelope: Envelope) -> None:
        received.append(envelope.id)

    bus = await connected(amqp_url, buses, watch_interval=0.3, stall_seconds=1.5)
    await bus.subscribe("lost", ["ProjectCreated"], record)
    channel, _queue, tag = bus._consumers[0]
    raw = await channel.get_underlay_channel()
    await raw.basic_cancel(tag)  # behind aio-pika's back: it keeps the consumer on its books

    before = created(1)
    await bus.publish(before)
    await asyncio.sleep(0.6)
    assert received == [], "the cancelled consumer still received messages"
    await eventually(lambda: bus._stalled_since is not None, what="the stall to be seen")
    assert not await bus.healthy()

    await eventually(lambda: bus.resets == 1, timeout=20, what="the connection to be rebuilt")
    await eventually(lambda: received == [before.id], what="the stalled message")
    after = created(2)
    await bus.publish(after)
    await eventually(lambda: received == [before.id, after.id], what="a message after the reset")
    assert await bus.healthy()


async def test_the_watchdog_leaves_a_healthy_consumer_alone(
    amqp_url: str, buses: list[RabbitBus]
) -> None:
    received: list[uuid.UUID] = []

    async def record(envelope: Envelope) -> None:
        received.append(envelope.id)

    bus = await connected(amqp_url, buses, watch_interval=0.2, stall_seconds=0.5)
    await bus.subscribe("calm", ["ProjectCreated"], record)
    sent = [created(n) for n in range(5)]
    for envelope in sent:
        await bus.publish(envelope)
        await asyncio.sleep(0.3)
    await eventually(lambda: received == [e.id for e in sent], what="every message")
    assert bus.resets == 0 and bus._stalled_since is None
    assert await bus.healthy()


async def test_a_consumer_wedged_by_a_hung_handler_is_rebuilt(
    amqp_url: str, buses: list[RabbitBus]
) -> None:
    """prefetch=1 and a handler that never returns: later messages wait on the queue with a
    consumer registered. The watchdog sees them wait with no delivery and rebuilds; the
    hung delivery goes back to the queue and is handled on the new connection."""
    hung = asyncio.Event()
    received: list[uuid.UUID] = []

    async def handler(envelope: Envelope) -> None:
        if not hung.is_set():
            hung.set()
            await asyncio.Event().wait()  # never returns (until the reset cancels it)
        received.append(envelope.id)

    bus = await connected(amqp_url, buses, watch_interval=0.3, stall_seconds=1.5)
    await bus.subscribe("wedged", ["ProjectCreated"], handler, prefetch=1)
    sent = [created(n) for n in range(3)]
    for envelope in sent:
        await bus.publish(envelope)
    await eventually(hung.is_set, what="the first delivery")
    await eventually(lambda: bus.resets == 1, timeout=20, what="the connection to be rebuilt")
    await eventually(
        lambda: set(received) == {e.id for e in sent}, timeout=20, what="every message"
    )


async def test_a_publish_channel_that_keeps_failing_is_rebuilt(
    amqp_url: str, buses: list[RabbitBus]
) -> None:
    """The bus's exchange handle is swapped for one on a channel closed behind its back:
    every publish fails although the connection is up, until the watchdog rebuilds it."""
    bus = await connected(amqp_url, buses, watch_interval=0.3, stall_seconds=1.5)
    await bus.declare("sink", ["ProjectCreated"])
    assert bus._connection is not None
    dead = await bus._connection.channel(publisher_confirms=True)
    bus._exchange = await dead.get_exchange(EXCHANGE)
    await dead.close()
    with pytest.raises(TransientError):
        await bus.publish(created())

    async def publish_until_confirmed() -> int:
        failures = 0
        while True:
            try:
                await bus.publish(created())
                return failures
            except TransientError:
                failures += 1
                await asyncio.sleep(0.1)

    failures = await asyncio.wait_for(publish_until_confirmed(), 20)
    assert failures > 0 and bus.resets == 1
    assert await bus.healthy()


def _queue_counts(amqp_url: str, queue: str) -> tuple[int, int]:
    """(ready, unacknowledged) of ``queue`` as the broker's management API reports them."""
    api, auth = management(amqp_url)
    vhost = quote(vhost_of(amqp_url), safe="")
    info = httpx.get(f"{api}/queues/{vhost}/{queue}", auth=auth, timeout=10).json()
    return int(info.get("messages_ready", -1)), int(info.get("messages_unacknowledged", -1))


@pytest.mark.slow
async def test_batched_acks_never_cover_a_delivery_still_being_handled(
    amqp_url: str, buses: list[RabbitBus]
) -> None:
    """Deliveries finished together are acked with few frames; one still being handled
    after them stays unacknowledged at the broker until its handler returns."""
    from shared.bus import acks

    total, handled = 120, Counter[int]()
    release = asyncio.Event()
    all_in = asyncio.Event()

    async def handler(envelope: Envelope) -> None:
        number = int(envelope.payload["spec"]["n"])
        handled[number] += 1
        if sum(handled.values()) >= total:
            all_in.set()
        await all_in.wait()  # finish together, like a group commit
        if number == 0:
            await release.wait()

    bus = await connected(amqp_url, buses)
    await bus.subscribe("batched", ["ProjectCreated"], handler, prefetch=total * 2)
    publisher = await connected(amqp_url, buses)
    await publisher.publish_many([created(n) for n in range(total)])
    await eventually(all_in.is_set, what="every delivery handled")
    # the first delivery is still being handled: every other one is acked on its own
    # frame or a multiple one that stops below it — never past it
    counts: tuple[int, int] = (-1, -1)

    def one_unacked() -> bool:
        nonlocal counts
        counts = _queue_counts(amqp_url, "batched")
        return counts == (0, 1)

    await eventually(one_unacked, timeout=30, what=f"one unacked delivery (have {counts})")
    release.set()

    def none_left() -> bool:
        nonlocal counts
        counts = _queue_counts(amqp_url, "batched")
        return counts == (0, 0)

    await eventually(none_left, timeout=30, what=f"every delivery acked (have {counts})")
    assert all(n == 1 for n in handled.values()) and len(handled) == total  # no redelivery

    # a second run with nothing held back: one multiple ack covers the lot
    handled.clear()
    all_in.clear()
    release.set()
    frames_before = sum(a.frames_sent for a in list(acks._BY_CHANNEL.values()))
    await publisher.publish_many([created(n) for n in range(total)])
    await eventually(all_in.is_set, what="every delivery handled again")
    await eventually(none_left, timeout=30, what=f"every delivery acked (have {counts})")
    frames = sum(a.frames_sent for a in list(acks._BY_CHANNEL.values())) - frames_before
    assert frames < total / 4, frames
