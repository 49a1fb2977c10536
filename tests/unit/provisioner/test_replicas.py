"""Two provisioner replicas on one database (issue 17 item 1): runs are leased per replica.

Replica ``a`` is the harness (it also collects the events every replica publishes); replica
``b`` is a second app on the same database, bus queue, fake cloud and fake env builder. The
cases run on SQLite and, marked integration, on PostgreSQL (where a batch claim locks its
rows ``FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.provisioner.drivers.base import NodeDriver, RunContext
from services.provisioner.drivers.fake import FakeCloud, FakeDriver
from services.provisioner.handlers import build_handlers
from services.provisioner.models import RunNodes
from services.provisioner.settings import ProvisionerSettings
from shared.bus import create_bus
from shared.events import ProjectCreated, RunCancelled, new_event
from tests.unit.provisioner.harness import FakeEnvBuilder, Harness, spec_dict

LEASE = 0.6  # seconds: heartbeats every 0.2 s


class Replica(Harness):
    """Another replica of the service: the same database and bus queue, no collector."""

    async def __aenter__(self) -> Replica:
        self.bus = create_bus(self.bus_url)
        await self.bus.connect()
        self._stack.push_async_callback(self.bus.close)
        await self.start()
        return self


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def shared_settings(
    settings: ProvisionerSettings, request: pytest.FixtureRequest
) -> ProvisionerSettings:
    update: dict[str, object] = {"provisioner_lease_seconds": LEASE}
    if request.param == "postgresql":
        update["database_url"] = request.getfixturevalue("postgres_url")
    return settings.model_copy(update=update)


class TaggedDriver(FakeDriver):
    """The fake driver of one replica: its run releases are logged under its tag."""

    def __init__(self, cloud: FakeCloud, provider: str, tag: str, log: list[str]) -> None:
        super().__init__(cloud, provider=provider)
        self.tag, self.log = tag, log

    async def release_run(self, ctx: RunContext) -> None:
        self.log.append(self.tag)
        await super().release_run(ctx)


@pytest.fixture
def teardowns() -> list[str]:
    """Which replica tore a run down, once per teardown."""
    return []


def _drivers(
    cloud: FakeCloud, tag: str, log: list[str]
) -> Callable[[str, uuid.UUID | None], NodeDriver]:
    return lambda provider, _owner: TaggedDriver(cloud, provider, tag, log)


@pytest.fixture
async def a(
    shared_settings: ProvisionerSettings,
    cloud: FakeCloud,
    builder: FakeEnvBuilder,
    teardowns: list[str],
) -> AsyncIterator[Harness]:
    drivers = _drivers(cloud, "a", teardowns)
    async with Harness(shared_settings, drivers=drivers, builder=builder) as h:
        yield h


@pytest.fixture
def make_b(
    shared_settings: ProvisionerSettings,
    cloud: FakeCloud,
    builder: FakeEnvBuilder,
    teardowns: list[str],
) -> Callable[[], Replica]:
    drivers = _drivers(cloud, "b", teardowns)
    return lambda: Replica(shared_settings, drivers=drivers, builder=builder)


def _insert(h: Harness, state: str, **fields: Any) -> uuid.UUID:
    row = RunNodes(
        run_id=uuid.uuid4(),
        project_id=uuid.uuid4(),
        provider="idc",
        spec=spec_dict(provider="idc"),
        state=state,
        **fields,
    )
    with h.provisioner.runtime.db.session() as s:
        s.add(row)
        s.commit()
    return row.run_id


def _row(h: Harness, run_id: uuid.UUID) -> RunNodes:
    with h.provisioner.runtime.db.session() as s:
        row = s.get(RunNodes, run_id)
        assert row is not None
        return row


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


async def _provisioning(
    a: Harness, b: Harness, builder: FakeEnvBuilder
) -> tuple[uuid.UUID, Harness, Harness]:
    """A run held in its configure step (builder blocked) by whichever replica got its
    ProjectCreated: the run, that replica (holding the lease) and the other one."""
    builder.block.clear()
    project, run = uuid.uuid4(), uuid.uuid4()
    spec = spec_dict(provider="idc")
    await a.publish(
        ProjectCreated(owner_id=uuid.uuid4(), spec=spec), project_id=project, run_id=run
    )
    stages = lambda: [e.payload["stage"] for e in a.of("ProvisioningProgress", run)]  # noqa: E731
    await _until(lambda: "configure" in stages())
    holder = _row(a, run).lease_holder
    if holder == a.provisioner.leases.instance:
        return run, a, b
    assert holder == b.provisioner.leases.instance
    return run, b, a


async def test_only_one_replica_resumes_an_unfinished_run(
    a: Harness, make_b: Callable[[], Replica], cloud: FakeCloud, builder: FakeEnvBuilder
) -> None:
    builder.block.clear()  # the resumed job stays in configure while b starts
    await a.stop()
    run = _insert(a, "provisioning")
    elsewhere = _insert(  # a live replica that is not in this test works on this one
        a,
        "provisioning",
        lease_holder="elsewhere",
        lease_until=datetime.now(UTC) + timedelta(hours=1),
    )
    await a.start()
    await _until(lambda: len(builder.configured) == 0 and cloud.created == [(run, 0)])
    async with make_b() as b:
        await asyncio.sleep(LEASE)  # b's start and a few heartbeats
        assert run in a.provisioner.jobs.held and run not in b.provisioner.jobs.held
        assert _row(a, run).lease_holder == a.provisioner.leases.instance
        builder.block.set()
        await a.wait_for("NodesReady", run)
        await asyncio.sleep(0.3)
    assert len(a.of("NodesReady", run)) == 1 and cloud.created == [(run, 0)]
    ready = _row(a, run)
    assert ready.state == "ready" and ready.lease_holder is None  # at rest: the lease is free
    untouched = _row(a, elsewhere)
    assert untouched.state == "provisioning" and untouched.lease_holder == "elsewhere"
    assert untouched.attempts == 0 and not any(r == elsewhere for r, _ in cloud.created)


async def test_an_expired_lease_is_taken_over(a: Harness, cloud: FakeCloud) -> None:
    # A replica that died a moment ago: its lease is still live for one second.
    run = _insert(
        a, "provisioning", lease_holder="died", lease_until=datetime.now(UTC) + timedelta(seconds=1)
    )
    await asyncio.sleep(0.5)  # two heartbeats: the live lease is respected
    assert cloud.created == [] and _row(a, run).lease_holder == "died"
    await a.wait_for("NodesReady", run)  # expired: taken over at a heartbeat
    assert cloud.created == [(run, 0)] and _row(a, run).attempts == 1


async def test_a_stopped_replica_hands_its_runs_over(
    a: Harness,
    make_b: Callable[[], Replica],
    cloud: FakeCloud,
    builder: FakeEnvBuilder,
    teardowns: list[str],
) -> None:
    async with make_b() as b:
        run, holder, other = await _provisioning(a, b, builder)
        assert run in holder.provisioner.jobs.held and run not in other.provisioner.jobs.held
        await holder.stop()  # gives its leases up: the other goes on at its next heartbeat
        assert _row(other, run).lease_holder in (None, other.provisioner.leases.instance)
        await _until(lambda: run in other.provisioner.jobs.held)
        builder.block.set()
        await a.wait_for("NodesReady", run)  # a's collector listens even with a stopped
    assert cloud.created == [(run, 0)]  # the node the first replica created was reused
    assert _row(other, run).attempts == 2 and teardowns == []


async def test_a_cancel_delivered_to_the_other_replica_reaches_the_run(
    a: Harness,
    make_b: Callable[[], Replica],
    cloud: FakeCloud,
    builder: FakeEnvBuilder,
    teardowns: list[str],
) -> None:
    async with make_b() as b:
        run, holder, other = await _provisioning(a, b, builder)
        project = _row(a, run).project_id
        cancel = build_handlers(other.provisioner.runtime, other.provisioner)["RunCancelled"]
        await cancel(new_event(RunCancelled(), project_id=project, run_id=run))
        released = await a.wait_for("NodesReleased", run)  # the holder's heartbeat saw it
    # the holder released the nodes; the other replica only recorded the cancel
    assert teardowns == ["a" if holder is a else "b"]
    assert builder.block.is_set() is False  # the configure step was stopped, not finished
    assert released.payload["nodes"] == ["idc-0"] and cloud.nodes == {}
    assert a.of("NodesReady", run) == [] and len(a.of("NodesReleased", run)) == 1
    row = _row(a, run)
    assert row.state == "released" and row.release_reason == "cancelled"
    assert row.lease_holder is None


async def test_autostop_fires_once(
    a: Harness, make_b: Callable[[], Replica], cloud: FakeCloud, teardowns: list[str]
) -> None:
    async with make_b() as b:
        project, run = uuid.uuid4(), uuid.uuid4()
        spec = spec_dict(provider="idc", autostop_minutes=1)
        await a.publish(
            ProjectCreated(owner_id=uuid.uuid4(), spec=spec), project_id=project, run_id=run
        )
        await a.wait_for("NodesReady", run)
        await _until(lambda: _row(a, run).lease_holder is None)  # at rest
        with a.provisioner.runtime.db.session() as s:
            row = s.get(RunNodes, run)
            assert row is not None
            row.last_active_at = datetime.now(UTC) - timedelta(minutes=2)
            # b works on the run (it holds its lease): a's sweep leaves it alone
            row.lease_holder = b.provisioner.leases.instance
            row.lease_until = datetime.now(UTC) + timedelta(hours=1)
            s.add(row)
            s.commit()
        await a.provisioner.sweep()
        assert _row(a, run).state == "ready" and a.of("NodesReleased", run) == []
        assert await asyncio.to_thread(b.provisioner.leases.release, run)
        sweeps: list[Awaitable[None]] = [a.provisioner.sweep(), b.provisioner.sweep()]
        await asyncio.gather(*sweeps)  # both replicas sweep at once
        await a.wait_for("NodesReleased", run)
        await asyncio.sleep(0.3)
    stops = [e for e in a.of("ProvisioningProgress", run) if e.payload["stage"] == "autostop"]
    assert len(stops) == 1 and len(a.of("NodesReleased", run)) == 1
    assert cloud.nodes == {} and cloud.terminated == [(run, 0)] and len(teardowns) == 1
    assert _row(a, run).release_reason == "autostop"
