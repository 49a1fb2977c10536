"""Transactional outbox and inbox on SQLite and PostgreSQL (shared/outbox/)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, Uuid, func, select

from shared.bus import Bus, PublishFailed, create_bus
from shared.bus.rabbit import RabbitBus
from shared.db import Database
from shared.events import Envelope, ProjectCreated, new_event
from shared.outbox import InboxRow, OutboxRelay, OutboxRow, add_to_outbox, claim_inbox
from tests.integration.shared.harness import eventually

SERVICE = "producer"
_metadata = MetaData()
effects = Table(
    "test_effects",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", Uuid, nullable=True),
    Column("note", String(64), nullable=True),
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated database (outbox + inbox + a table for effects) on either engine."""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'outbox.db'}"
    database = Database(url)
    database.migrate(service="test")
    _metadata.create_all(database.engine)
    yield database
    database.dispose()


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Database]:
    database = Database(postgres_url)
    database.migrate(service="test")
    _metadata.create_all(database.engine)
    yield database
    database.dispose()


def event(n: int = 0) -> Envelope:
    return new_event(ProjectCreated(owner_id=uuid.uuid4(), spec={"n": n}))


def stage(db: Database, envelopes: Sequence[Envelope]) -> None:
    with db.session() as session:
        for envelope in envelopes:
            add_to_outbox(session, envelope, service=SERVICE)
        session.commit()


def count(db: Database, table: object, *where: object) -> int:
    with db.session() as session:
        query = select(func.count()).select_from(table).where(*where)  # type: ignore[arg-type]
        return int(session.execute(query).scalar_one())


def pending(db: Database) -> int:
    return count(db, OutboxRow, OutboxRow.sent_at.is_(None))  # type: ignore[union-attr]


def inbox_handler(db: Database, *, service: str = "consumer", seen: Counter[uuid.UUID]):  # type: ignore[no-untyped-def]
    """The canonical handler shape: inbox claim + effect in one transaction."""

    async def handle(envelope: Envelope) -> None:
        seen[envelope.id] += 1
        with db.session() as session:
            if not claim_inbox(session, envelope, service=service):
                return
            session.execute(effects.insert().values(event_id=envelope.id))
            session.commit()

    return handle


async def memory_bus(seen: Counter[uuid.UUID], handler=None) -> Bus:  # type: ignore[no-untyped-def]
    bus = create_bus(f"memory://{uuid.uuid4().hex}")
    await bus.connect()

    async def record(envelope: Envelope) -> None:
        seen[envelope.id] += 1

    await bus.subscribe("consumer", ["ProjectCreated"], handler or record)
    return bus


class CountingRabbitBus(RabbitBus):
    """RabbitMQ bus that records how many publishes were awaiting a confirm at once (read
    off the AMQP channel's pending confirmations whenever frames are queued for the
    socket, below whatever path the bus takes to it)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.max_inflight = 0

    async def connect(self) -> None:
        await super().connect()
        assert self._publish_channel is not None
        raw: Any = await self._publish_channel.get_underlay_channel()
        put = raw.write_queue.put

        async def counted(item: Any) -> None:
            self.max_inflight = max(self.max_inflight, len(raw.confirmations))
            await put(item)

        raw.write_queue.put = counted


# --- producer side ----------------------------------------------------------------------


def test_a_state_change_and_its_event_commit_together_or_not_at_all(db: Database) -> None:
    with db.session() as session:
        session.execute(effects.insert().values(note="kept"))
        add_to_outbox(session, event(), service=SERVICE)
        session.commit()
    with pytest.raises(RuntimeError), db.session() as session:
        session.execute(effects.insert().values(note="lost"))
        add_to_outbox(session, event(), service=SERVICE)
        session.flush()
        raise RuntimeError("the handler failed before its commit")
    assert count(db, effects) == 1
    assert count(db, OutboxRow) == 1


async def test_the_relay_publishes_pending_rows_and_marks_them_sent(db: Database) -> None:
    seen: Counter[uuid.UUID] = Counter()
    bus = await memory_bus(seen)
    envelopes = [event(i) for i in range(250)]
    stage(db, envelopes)
    relay = OutboxRelay(db, bus, service=SERVICE, batch_size=200)
    assert await relay.relay_once() == 200
    assert await relay.relay_once() == 50
    assert await relay.relay_once() == 0
    await eventually(lambda: len(seen) == 250, what="250 deliveries")
    assert seen == Counter(e.id for e in envelopes)
    assert pending(db) == 0
    await bus.close()


async def test_a_relay_run_loop_is_woken_by_notify(db: Database) -> None:
    seen: Counter[uuid.UUID] = Counter()
    bus = await memory_bus(seen)
    relay = OutboxRelay(db, bus, service=SERVICE, poll_interval=60)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.1)
        sent = event()
        stage(db, [sent])
        relay.notify()
        await eventually(lambda: seen[sent.id] == 1, timeout=5, what="a prompt publish")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await bus.close()


class GatedBus:
    """Records what the relay publishes, batch by batch, in front of a memory bus; the
    batch numbered ``hold`` waits until the test cancels it; ``fail`` fails everything."""

    def __init__(self, inner: Bus, *, hold: int | None = None, fail: bool = False) -> None:
        self.inner, self.hold, self.fail = inner, hold, fail
        self.batches: list[list[uuid.UUID]] = []
        self.holding = asyncio.Event()

    async def publish_stored(self, events: Sequence[Any]) -> list[BaseException | None]:
        self.batches.append([e.event_id for e in events])
        if len(self.batches) == self.hold:
            self.holding.set()
            await asyncio.Event().wait()
        if self.fail:
            return [PublishFailed("broker down") for _ in events]
        return await self.inner.publish_stored(events)


async def test_drain_publishes_every_row_once_in_order(db: Database) -> None:
    seen: Counter[uuid.UUID] = Counter()
    gated = GatedBus(await memory_bus(seen))
    envelopes = [event(i) for i in range(230)]
    stage(db, envelopes)
    relay = OutboxRelay(db, gated, service=SERVICE, batch_size=50)  # type: ignore[arg-type]
    assert await relay.drain() == 230
    assert [len(b) for b in gated.batches] == [50, 50, 50, 50, 30]
    assert [i for b in gated.batches for i in b] == [e.id for e in envelopes]
    assert pending(db) == 0
    assert await relay.drain() == 0
    await gated.inner.close()


async def test_a_cancelled_drain_loses_nothing_and_locks_nothing(db: Database) -> None:
    """Cancelled while its second batch is in flight (the third being claimed): the first
    batch is marked, everything else stays pending and unlocked for the next drain."""
    seen: Counter[uuid.UUID] = Counter()
    inner = await memory_bus(seen)
    gated = GatedBus(inner, hold=2)
    stage(db, [event(i) for i in range(200)])
    relay = OutboxRelay(db, gated, service=SERVICE, batch_size=50)  # type: ignore[arg-type]
    task = asyncio.create_task(relay.drain())
    await asyncio.wait_for(gated.holding.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pending(db) == 150
    again = OutboxRelay(db, inner, service=SERVICE, batch_size=50)
    assert await asyncio.wait_for(again.drain(), 10) == 150  # a leaked lock would hide rows
    assert pending(db) == 0
    await inner.close()


async def test_drain_stops_when_the_broker_fails_every_publish(db: Database) -> None:
    seen: Counter[uuid.UUID] = Counter()
    gated = GatedBus(await memory_bus(seen), fail=True)
    stage(db, [event(i) for i in range(120)])
    relay = OutboxRelay(db, gated, service=SERVICE, batch_size=50)  # type: ignore[arg-type]
    assert await relay.drain() == 0
    # the second batch was on its way when the first came back failed; nothing after it
    assert len(gated.batches) == 2
    assert pending(db) == 120
    assert count(db, OutboxRow, OutboxRow.attempts == 1) == 100
    await gated.inner.close()


class MarkFailsOnce(OutboxRelay):
    """A relay whose process 'dies' between publishing and marking, once."""

    failed = False

    def _mark(self, session, *, sent, retry):  # type: ignore[no-untyped-def]
        if not self.failed:
            self.failed = True
            raise ConnectionError("crashed after publishing, before marking")
        super()._mark(session, sent=sent, retry=retry)


async def test_a_crash_between_publish_and_mark_gives_a_duplicate_never_a_loss(
    db: Database,
) -> None:
    seen: Counter[uuid.UUID] = Counter()
    bus = await memory_bus(seen, inbox_handler(db, seen=Counter()))
    envelopes = [event(i) for i in range(20)]
    stage(db, envelopes)
    relay = MarkFailsOnce(db, create_bus(bus.url), service=SERVICE)  # type: ignore[attr-defined]
    await relay.bus.connect()
    with pytest.raises(ConnectionError):
        await relay.relay_once()
    assert pending(db) == 20  # nothing was marked: all will be published again
    assert await relay.relay_once() == 20
    assert pending(db) == 0
    await eventually(lambda: count(db, InboxRow) == 20, what="20 handled events")
    assert count(db, effects) == 20  # the inbox absorbed the duplicates
    await bus.close()


async def test_a_drain_that_fails_midway_leaves_no_batch_locked(db: Database) -> None:
    """The first mark fails while later batches are in flight: those roll back (on
    PostgreSQL their row locks go with their transactions) and the next drain takes every
    row not marked."""
    seen: Counter[uuid.UUID] = Counter()
    bus = await memory_bus(seen)
    envelopes = [event(i) for i in range(200)]
    stage(db, envelopes)
    relay = MarkFailsOnce(db, bus, service=SERVICE, batch_size=50)
    with pytest.raises(ConnectionError):
        await relay.drain()
    left = pending(db)
    assert 0 < left < 200
    assert await asyncio.wait_for(relay.drain(), 10) == left  # a leaked lock would hide rows
    assert pending(db) == 0
    await eventually(lambda: set(seen) == {e.id for e in envelopes}, what="every event")
    await bus.close()


async def test_an_unroutable_row_is_retried_then_dropped_after_the_grace(db: Database) -> None:
    bus = create_bus(f"memory://{uuid.uuid4().hex}")  # no queue bound at all
    await bus.connect()
    stage(db, [event()])
    patient = OutboxRelay(db, bus, service=SERVICE, unroutable_grace=600)
    assert await patient.relay_once() == 0
    assert pending(db) == 1
    assert count(db, OutboxRow, OutboxRow.attempts == 1) == 1
    impatient = OutboxRelay(db, bus, service=SERVICE, unroutable_grace=0)
    assert await impatient.relay_once() == 0
    assert pending(db) == 0
    await bus.close()


async def test_handlers_committing_to_the_same_sqlite_file_do_not_break_the_relay(
    tmp_path: Path,
) -> None:
    """Embedded mode: consumers commit while the relay awaits its confirms."""
    db = Database(f"sqlite:///{tmp_path / 'embedded.db'}")
    db.migrate(service="test")
    _metadata.create_all(db.engine)
    seen: Counter[uuid.UUID] = Counter()
    bus = await memory_bus(seen, inbox_handler(db, seen=Counter()))
    stage(db, [event(i) for i in range(100)])
    relay = OutboxRelay(db, bus, service=SERVICE, batch_size=100)
    assert await relay.relay_once() == 100
    assert pending(db) == 0
    await eventually(lambda: count(db, effects) == 100, what="100 effects")
    await bus.close()
    db.dispose()


# --- PostgreSQL + RabbitMQ ------------------------------------------------------------------


@pytest.mark.integration
async def test_the_relay_keeps_many_confirms_in_flight(pg: Database, amqp_url: str) -> None:
    bus = CountingRabbitBus(amqp_url)
    await bus.connect()
    await bus.declare("consumer", ["ProjectCreated"])
    stage(pg, [event(i) for i in range(200)])
    relay = OutboxRelay(pg, bus, service=SERVICE, batch_size=200)
    assert await relay.relay_once() == 200
    assert bus.max_inflight == 200, "the relay published one at a time"
    await bus.close()


@pytest.mark.integration
@pytest.mark.slow
async def test_two_relays_at_once_publish_every_row_exactly_once(
    pg: Database, amqp_url: str
) -> None:
    seen: Counter[uuid.UUID] = Counter()
    consumer = RabbitBus(amqp_url)
    await consumer.connect()

    async def record(envelope: Envelope) -> None:
        seen[envelope.id] += 1

    await consumer.subscribe("consumer", ["ProjectCreated"], record, prefetch=64)
    envelopes = [event(i) for i in range(1000)]
    stage(pg, envelopes)
    relays = [
        OutboxRelay(pg, RabbitBus(amqp_url), service=SERVICE, batch_size=50, poll_interval=0.05)
        for _ in range(2)
    ]
    for relay in relays:
        await relay.bus.connect()
    tasks = [asyncio.create_task(relay.run()) for relay in relays]
    try:
        await eventually(lambda: len(seen) == 1000, timeout=60, what="1000 deliveries")
        await asyncio.sleep(0.5)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for relay in relays:
            await relay.bus.close()
        await consumer.close()
    assert seen == Counter(e.id for e in envelopes), "a row was lost or published twice"
    assert all(relay.published > 0 for relay in relays), "the relays did not run concurrently"
    assert sum(relay.published for relay in relays) == 1000
    assert pending(pg) == 0


# --- consumer side ------------------------------------------------------------------------


async def test_the_inbox_dedupes_in_the_same_transaction_as_the_effect(db: Database) -> None:
    handle = inbox_handler(db, seen=Counter())
    sent = event()
    await handle(sent)
    await handle(sent)  # a redelivery
    assert count(db, effects) == 1

    failing = event(1)
    with pytest.raises(RuntimeError), db.session() as session:
        assert claim_inbox(session, failing, service="consumer")
        session.execute(effects.insert().values(event_id=failing.id))
        raise RuntimeError("the effect failed before the commit")
    assert count(db, InboxRow, InboxRow.event_id == failing.id) == 0
    await handle(failing)  # the retry does the work
    assert count(db, effects) == 2
    other_service = inbox_handler(db, service="someone-else", seen=Counter())
    await other_service(sent)  # each service has its own inbox
    assert count(db, effects) == 3


@pytest.mark.integration
def test_a_concurrent_duplicate_waits_and_then_sees_the_claim(pg: Database) -> None:
    sent = event()
    claimed = threading.Event()
    outcome: list[bool] = []

    def second() -> None:
        claimed.wait(10)
        with pg.session() as session:
            outcome.append(claim_inbox(session, sent, service="consumer"))
            session.commit()

    thread = threading.Thread(target=second)
    thread.start()
    with pg.session() as session:
        assert claim_inbox(session, sent, service="consumer")
        claimed.set()
        thread.join(0.5)
        assert thread.is_alive(), "the duplicate did not wait for the first claim"
        session.commit()
    thread.join(10)
    assert outcome == [False]
    assert count(pg, InboxRow) == 1


@pytest.mark.integration
async def test_rows_staged_before_the_routing_fields_relay_and_keep_their_labels(
    pg: Database, amqp_url: str
) -> None:
    """Rows without the stored routing fields (staged before shared_0002) are parsed; both
    kinds reach a consumer with the envelope's id, type, version and trace context."""
    bus = RabbitBus(amqp_url)
    await bus.connect()
    received: list[Envelope] = []
    done = asyncio.Event()

    async def record(envelope: Envelope) -> None:
        received.append(envelope)
        if len(received) == 2:
            done.set()

    await bus.subscribe(f"legacy-{uuid.uuid4().hex[:8]}", ["ProjectCreated"], record)
    old, new = event(1), event(2)
    stage(pg, [old, new])
    with pg.session() as session:  # what a row staged by the previous code looks like
        session.execute(
            OutboxRow.__table__.update()  # type: ignore[attr-defined]
            .where(OutboxRow.event_id == old.id)
            .values(event_version=None, occurred_at=None, correlation_id=None, traceparent=None)
        )
        session.commit()
    relay = OutboxRelay(pg, bus, service=SERVICE)
    assert await relay.relay_once() == 2
    await asyncio.wait_for(done.wait(), 10)
    assert {e.id for e in received} == {old.id, new.id}
    for got in received:
        sent = old if got.id == old.id else new
        assert (got.type, got.version, got.correlation_id) == (
            sent.type,
            sent.version,
            sent.correlation_id,
        )
        assert got.payload == sent.payload
    await bus.close()
