"""The bus contract (shared/bus/base.py), run against the memory bus and real RabbitMQ."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest

from shared.bus import Bus, UnroutableError
from shared.errors import DependencyDown, InvalidInput, TransientError
from shared.events import Envelope, ProjectCreated, RunCancelled, new_event
from tests.integration.shared.harness import BusHarness, eventually

QUEUE = "contract"
TYPES = ["ProjectCreated"]


def created(n: int = 0) -> Envelope:
    return new_event(
        ProjectCreated(owner_id=uuid.uuid4(), spec={"name": f"p{n}"}), project_id=uuid.uuid4()
    )


class Recorder:
    """A handler that records envelopes; ``fail`` decides per call whether to raise."""

    def __init__(self, fail: dict[uuid.UUID, list[BaseException]] | None = None) -> None:
        self.seen: list[Envelope] = []
        self.fail = fail or {}

    async def __call__(self, envelope: Envelope) -> None:
        self.seen.append(envelope)
        errors = self.fail.get(envelope.id)
        if errors:
            raise errors.pop(0)

    def calls(self, envelope: Envelope) -> int:
        return sum(1 for e in self.seen if e.id == envelope.id)


async def subscribed(harness: BusHarness, handler: Recorder, **options: int) -> Bus:
    bus = await harness.bus()
    await bus.subscribe(QUEUE, TYPES, handler, **options)
    return bus


async def test_round_trip_keeps_the_envelope(harness: BusHarness) -> None:
    handler = Recorder()
    bus = await subscribed(harness, handler)
    sent = created()
    await bus.publish(sent)
    await eventually(lambda: len(handler.seen) == 1, what="delivery")
    assert handler.seen[0] == sent
    assert await bus.healthy()


async def test_a_message_is_acked_only_after_its_handler_returns(harness: BusHarness) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    first_seen: list[Envelope] = []

    async def slow(envelope: Envelope) -> None:
        first_seen.append(envelope)
        started.set()
        await release.wait()  # never set: the consumer stops mid-handler

    bus = await harness.bus(close_grace=0.2)
    await bus.subscribe(QUEUE, TYPES, slow)
    publisher = await harness.bus()
    sent = created()
    await publisher.publish(sent)
    await asyncio.wait_for(started.wait(), 15)
    await bus.close()  # the handler is cancelled: the message was never acked

    handler = Recorder()
    await subscribed(harness, handler)
    await eventually(lambda: handler.calls(sent) == 1, what="redelivery to a new consumer")
    assert first_seen == [sent]

    # Handled and acked: a later consumer does not see it again.
    late = Recorder()
    await subscribed(harness, late)
    await publisher.publish(created(1))
    await eventually(lambda: len(handler.seen) + len(late.seen) == 2, what="the next message")
    assert handler.calls(sent) + late.calls(sent) == 1


async def test_a_transient_error_is_retried_then_succeeds(harness: BusHarness) -> None:
    sent = created()
    handler = Recorder({sent.id: [TransientError("db hiccup"), OSError("reset")]})
    bus = await subscribed(harness, handler, max_deliveries=5)
    await bus.publish(sent)
    await eventually(lambda: handler.calls(sent) == 3, what="two retries")
    await asyncio.sleep(0.5)
    assert handler.calls(sent) == 3
    assert await harness.dead(at_least=0, timeout=0) == []


async def test_a_dependency_outage_is_held_through_without_spending_deliveries(
    harness: BusHarness,
) -> None:
    """The database down for longer than the delivery budget lasts: the message is held
    and handled once the database is back, never dead-lettered (issue 19 item 1)."""
    from sqlalchemy.exc import OperationalError

    sent = created()
    down = [OperationalError("SELECT 1", {}, Exception("connection refused")) for _ in range(4)]
    handler = Recorder({sent.id: [*down, DependencyDown("vault", "vault is sealed")]})
    bus = await subscribed(harness, handler, max_deliveries=2)
    await bus.publish(sent)
    await eventually(lambda: handler.calls(sent) == 6, what="held through the outage")
    await asyncio.sleep(0.5)
    assert handler.calls(sent) == 6 and not handler.fail[sent.id]
    assert await harness.dead(at_least=0, timeout=0) == []


@pytest.mark.parametrize("limit", [1, 3])
async def test_a_poison_message_is_dead_lettered_after_the_limit(
    harness: BusHarness, limit: int
) -> None:
    poison, fine = created(0), created(1)
    handler = Recorder({poison.id: [TransientError(f"fail {i}") for i in range(100)]})
    bus = await subscribed(harness, handler, max_deliveries=limit, prefetch=1)
    await bus.publish(poison)
    dead = await harness.dead(at_least=1)
    assert [Envelope.from_bytes(body).id for body in dead] == [poison.id]
    assert handler.calls(poison) == limit

    await bus.publish(fine)  # the consumer keeps serving
    await eventually(lambda: handler.calls(fine) == 1, what="the next message")
    assert handler.calls(poison) == limit


async def test_a_client_error_is_dead_lettered_at_once(harness: BusHarness) -> None:
    sent = created()
    handler = Recorder({sent.id: [InvalidInput("bad spec")] * 5})
    bus = await subscribed(harness, handler, max_deliveries=5)
    await bus.publish(sent)
    dead = await harness.dead(at_least=1)
    assert [Envelope.from_bytes(body).id for body in dead] == [sent.id]
    assert handler.calls(sent) == 1


async def test_an_invalid_body_is_dead_lettered_at_once(harness: BusHarness) -> None:
    handler = Recorder()
    bus = await subscribed(harness, handler)
    await harness.publish_raw(b"{not an envelope", "ProjectCreated")
    assert await harness.dead(at_least=1) == [b"{not an envelope"]
    assert handler.seen == []
    sent = created()
    await bus.publish(sent)
    await eventually(lambda: handler.calls(sent) == 1, what="the next message")


async def test_an_unroutable_publish_raises(harness: BusHarness) -> None:
    bus = await harness.bus()
    with pytest.raises(UnroutableError):
        await bus.publish(new_event(RunCancelled()))


async def test_declare_makes_a_type_routable_without_consuming(harness: BusHarness) -> None:
    bus = await harness.bus()
    await bus.declare(QUEUE, TYPES, max_deliveries=5)
    sent = created()
    await bus.publish(sent)
    handler = Recorder()
    await bus.subscribe(QUEUE, TYPES, handler, max_deliveries=5)
    await eventually(lambda: handler.calls(sent) == 1, what="the stored message")


async def test_publish_many_reports_one_outcome_per_envelope(harness: BusHarness) -> None:
    handler = Recorder()
    bus = await subscribed(harness, handler)
    batch = [created(i) for i in range(50)]
    batch.insert(10, new_event(RunCancelled()))  # no queue for this type
    results = await bus.publish_many(batch)
    assert len(results) == 51
    assert isinstance(results[10], UnroutableError)
    assert [r for i, r in enumerate(results) if i != 10] == [None] * 50
    await eventually(lambda: len(handler.seen) == 50, what="50 deliveries")
    assert Counter(e.id for e in handler.seen) == Counter(
        e.id for e in batch if e.type == "ProjectCreated"
    )
