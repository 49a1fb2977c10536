"""Fan-out across gateway replicas (issue 14): a process that stored only some of a
project's events (the shared queue's competing consumers gave the rest to another replica)
still hands every connection every seq once, in order — the hub reads each gap from the
log once for all its connections, instead of each connection reading it."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path

import pytest

from services.gateway.eventlog import Frame, append_many
from services.gateway.fanout import Connection, Hub, Subscription
from services.gateway.main import MIGRATIONS
from services.gateway.models import Project
from shared.db import Database
from shared.events import TrainingProgress, new_event
from tests.unit.gateway.test_ws_batching import Recorder

pytestmark = pytest.mark.timeout(60)

CONNECTIONS = 20


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fanout") / "template.db"
    template = Database(f"sqlite:///{path}")
    template.migrate(MIGRATIONS, service="gateway")
    template.dispose()
    return path


@pytest.fixture
def db(migrated: Path, tmp_path: Path) -> Database:
    shutil.copy(migrated, tmp_path / "gw.db")
    return Database(f"sqlite:///{tmp_path / 'gw.db'}")


def _store(db: Database, project_id: uuid.UUID, n: int) -> list[Frame]:
    envelopes = [new_event(TrainingProgress(step=s), project_id=project_id) for s in range(n)]
    frames = [f for f in append_many(db, envelopes) if f is not None]
    assert len(frames) == n
    return frames


def _subscribe(
    hub: Hub, project_id: uuid.UUID, db: Database | None = None
) -> tuple[Recorder, Connection]:
    client = Recorder()
    # no database for the connection unless given: a catch-up of its own would fail
    conn = Connection(
        send=client.send, close=client.close, db=db,  # type: ignore[arg-type]
        queue_size=100_000, ping_interval=60,
    )  # fmt: skip
    conn.subs[project_id] = Subscription(project_id=project_id, last_sent=0, pending=None)
    hub.watch(conn, project_id)
    hub.known(project_id, 0)
    conn.start()
    return client, conn


async def _until(predicate: object, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "not delivered in time"
        await asyncio.sleep(0.01)


async def test_frames_of_another_replica_fill_gaps_once_for_every_connection(
    db: Database,
) -> None:
    with db.session() as session:
        project = Project(name="p", spec={}, owner_id=uuid.uuid4())
        session.add(project)
        session.commit()
    pid = project.id
    hub = Hub(db, poll_interval=3600)  # no poller: the gap reads alone must fill in
    clients = [_subscribe(hub, pid) for _ in range(CONNECTIONS)]
    frames = _store(db, pid, 300)
    try:
        # this replica stored every third event (the others came from the other replica),
        # dispatched in bursts as its group commits would, sometimes twice (poll + writer)
        mine = [f for f in frames if f.seq % 3 == 0]
        for i in range(0, len(mine), 7):
            for frame in mine[i : i + 7]:
                hub.dispatch(frame)
            hub.dispatch(mine[i])  # a duplicate is dropped
            await asyncio.sleep(0)
        await _until(lambda: all(len(c.seqs()) >= 300 for c, _ in clients))
        for client, _ in clients:
            assert client.seqs() == list(range(1, 301))  # every seq once, in order
            assert client.closed == []
        # one log read per gap at most, shared by the connections (not one each)
        assert 1 <= hub.gap_reads <= len(mine)
        # later frames beyond the last one flow on; older ones are dropped as duplicates
        more = _store(db, pid, 3)
        for frame in reversed(more):
            hub.dispatch(frame)
        hub.dispatch(frames[5])
        await _until(lambda: all(len(c.seqs()) >= 303 for c, _ in clients))
        assert all(c.seqs() == list(range(1, 304)) for c, _ in clients)
    finally:
        for _, conn in clients:
            await conn.stop()
        await db.aio.close()
        db.dispose()


async def test_a_gap_whose_events_are_gone_does_not_stall_the_stream(db: Database) -> None:
    pid = uuid.uuid4()  # no such project: its "missing" events will never be found
    hub = Hub(db, poll_interval=3600)
    client, conn = _subscribe(hub, pid, db)  # its own look at the log finds nothing either
    try:
        text = '{"type":"event","seq":%d,"event":{}}'
        hub.dispatch(Frame(pid, 1, text % 1))
        hub.dispatch(Frame(pid, 4, text % 4))  # 2 and 3 cannot be read
        hub.dispatch(Frame(pid, 5, text % 5))
        await _until(lambda: len(client.seqs()) >= 3)
        assert client.seqs() == [1, 4, 5]
        assert hub.gap_reads == 1
    finally:
        await conn.stop()
        await db.aio.close()
        db.dispose()
