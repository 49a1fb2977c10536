"""Outbox relay throughput: confirms in flight together vs one publish at a time.

Real PostgreSQL and RabbitMQ; run with ``make bench`` (``pytest -m bench -s tests/bench``).
"""

from __future__ import annotations

import time
import uuid

import pytest

from shared.bus.rabbit import RabbitBus
from shared.db import Database
from shared.events import ProjectCreated, new_event
from shared.outbox import OutboxRelay, add_to_outbox

pytestmark = [pytest.mark.bench, pytest.mark.integration]

N = 2000
SERVICE = "bench"


async def test_relay_confirmed_publishes_per_second(postgres_url: str, amqp_url: str) -> None:
    db = Database(postgres_url)
    db.migrate(service=SERVICE)
    bus = RabbitBus(amqp_url)
    await bus.connect()
    await bus.declare("bench-sink", ["ProjectCreated"])
    try:
        envelopes = [
            new_event(ProjectCreated(owner_id=uuid.uuid4(), spec={"n": i})) for i in range(N)
        ]
        with db.session() as session:
            for envelope in envelopes:
                add_to_outbox(session, envelope, service=SERVICE)
            session.commit()

        relay = OutboxRelay(db, bus, service=SERVICE, batch_size=200)
        start = time.perf_counter()
        while await relay.relay_once():
            pass
        relay_seconds = time.perf_counter() - start
        assert relay.published == N

        one_by_one = [
            new_event(ProjectCreated(owner_id=uuid.uuid4(), spec={"n": i})) for i in range(N)
        ]
        start = time.perf_counter()
        for envelope in one_by_one:
            await bus.publish(envelope)
        single_seconds = time.perf_counter() - start
    finally:
        await bus.close()
        db.dispose()

    relay_rate, single_rate = N / relay_seconds, N / single_seconds
    print(
        f"\noutbox relay (PostgreSQL claim+mark, batches of 200, confirms in flight): "
        f"{relay_rate:,.0f} confirmed publishes/s ({relay_seconds:.2f}s for {N})"
        f"\none at a time (await bus.publish in a loop):                           "
        f"{single_rate:,.0f} confirmed publishes/s ({single_seconds:.2f}s for {N})"
        f"\nratio: {relay_rate / single_rate:.1f}x"
    )
    assert relay_rate > single_rate
