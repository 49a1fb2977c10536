"""Outbox relay throughput: confirms in flight together vs one publish at a time.

Real PostgreSQL and RabbitMQ; run with ``make bench`` (``pytest -m bench -s tests/bench``).
"""

from __future__ import annotations

import os
import statistics
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
ROUNDS = int(os.environ.get("AIDP_BENCH_ROUNDS", "3"))


async def _round(db: Database, bus: RabbitBus, number: int) -> tuple[float, float]:
    """(relay rate, one-at-a-time rate) of one round, in confirmed publishes per second."""
    service = f"{SERVICE}{number}"
    db.migrate(service=service)
    envelopes = [new_event(ProjectCreated(owner_id=uuid.uuid4(), spec={"n": i})) for i in range(N)]
    with db.session() as session:
        for envelope in envelopes:
            add_to_outbox(session, envelope, service=service)
        session.commit()

    relay = OutboxRelay(db, bus, service=service, batch_size=200)
    start = time.perf_counter()
    assert await relay.drain() == N
    relay_seconds = time.perf_counter() - start
    assert relay.published == N

    one_by_one = [new_event(ProjectCreated(owner_id=uuid.uuid4(), spec={"n": i})) for i in range(N)]
    start = time.perf_counter()
    for envelope in one_by_one:
        await bus.publish(envelope)
    single_seconds = time.perf_counter() - start
    return N / relay_seconds, N / single_seconds


def _spread(values: list[float], fmt: str) -> str:
    return "/".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


async def test_relay_confirmed_publishes_per_second(postgres_url: str, amqp_url: str) -> None:
    """Both ways in each round, so a noisy moment hits both; the ratio is per round."""
    db = Database(postgres_url)
    bus = RabbitBus(amqp_url)
    await bus.connect()
    await bus.declare("bench-sink", ["ProjectCreated"])
    try:
        rounds = [await _round(db, bus, number) for number in range(ROUNDS)]
    finally:
        await bus.close()
        db.dispose()

    relay, single = [r for r, _ in rounds], [s for _, s in rounds]
    ratios = [r / s for r, s in rounds]
    print(
        f"\noutbox relay, {ROUNDS} rounds of {N} (min/median/max):"
        f"\n  relay.drain (PostgreSQL, batches of 200, claim and mark beside the publishes): "
        f"{_spread(relay, '{:,.0f}')} confirmed publishes/s"
        f"\n  one at a time (await bus.publish in a loop): {_spread(single, '{:,.0f}')} /s"
        f"\n  ratio: {_spread(ratios, '{:.1f}')} x (goal >= 4 x, issue 14)"
    )
    assert statistics.median(ratios) >= 4, ratios
