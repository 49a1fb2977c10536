"""The event log: gapless per-project seq, dedupe on event id, unknown projects dropped;
run status derivation as a pure function."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.gateway.eventlog import Frame, append, events_after, latest_seqs
from services.gateway.main import MIGRATIONS
from services.gateway.models import Project, Run
from services.gateway.status import derive
from shared.db import Database
from shared.events import (
    ArtifactsFailed,
    ModelDeployed,
    NodesFailed,
    RunCancelled,
    TrainingCompleted,
    TrainingProgress,
    TrainingStarted,
    new_event,
)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'log.db'}")
    database.migrate(MIGRATIONS, service="gateway")
    return database


def _project(db: Database) -> tuple[uuid.UUID, uuid.UUID]:
    project = Project(name="p", spec={"deploy": {"enabled": True}}, owner_id=uuid.uuid4())
    run = Run(project_id=project.id, number=1, spec=project.spec)
    with db.session() as s:
        s.add(project)
        s.add(run)
        s.commit()
    return project.id, run.id


def test_seq_is_gapless_per_project_and_duplicates_are_dropped(db: Database) -> None:
    a, run_a = _project(db)
    b, _ = _project(db)
    first = new_event(TrainingProgress(step=1), project_id=a, run_id=run_a)
    assert append(db, first).seq == 1  # type: ignore[union-attr]
    assert append(db, first) is None  # redelivered: dropped, no seq used
    assert append(db, new_event(TrainingProgress(step=2), project_id=a)).seq == 2  # type: ignore[union-attr]
    assert append(db, new_event(TrainingProgress(step=1), project_id=b)).seq == 1  # type: ignore[union-attr]
    assert append(db, new_event(TrainingProgress(step=1), project_id=uuid.uuid4())) is None
    assert append(db, new_event(TrainingProgress(step=1))) is None  # no project
    assert latest_seqs(db, [a, b]) == {a: 2, b: 1}
    rows = events_after(db, a, after=0, limit=10)
    assert [seq for seq, _ in rows] == [1, 2]
    assert events_after(db, a, after=1, limit=10, run_id=run_a) == []


def test_frame_is_the_protocol_message(db: Database) -> None:
    import json

    a, run_a = _project(db)
    envelope = new_event(TrainingProgress(step=3), project_id=a, run_id=run_a)
    frame = append(db, envelope)
    assert frame is not None
    message = json.loads(frame.text)
    assert message["type"] == "event" and message["seq"] == 1
    assert message["event"]["id"] == str(envelope.id)
    assert message["event"]["payload"]["step"] == 3


NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _derive(payload: object, status: str, *, deploy: bool = False) -> dict[str, object]:
    envelope = new_event(payload, project_id=uuid.uuid4(), run_id=uuid.uuid4())  # type: ignore[arg-type]
    return derive(envelope, status=status, deploy_enabled=deploy, now=NOW).values


def test_status_moves_forward_only() -> None:
    assert _derive(TrainingStarted(world_size=1, nodes=["n"]), "queued") == {
        "status": "training",
        "preparing_at": NOW,
        "training_at": NOW,
        "updated_at": NOW,
    }
    changed = _derive(TrainingProgress(step=2, loss=1.0), "training")
    assert "status" not in changed and changed["progress"] == {
        "step": 2,
        "loss": 1.0,
        "metrics": {},
    }
    assert (
        _derive(TrainingCompleted(model_version="v", digest="d"), "training")["status"]
        == "succeeded"
    )
    deploying = _derive(TrainingCompleted(model_version="v", digest="d"), "training", deploy=True)
    assert deploying["status"] == "deploying" and deploying["deploying_at"] == NOW
    # the event's own ``deploy`` wins over the spec (None: an older trainer, the spec says)
    said = TrainingCompleted(model_version="v", digest="d", deploy=False)
    assert _derive(said, "training", deploy=True)["status"] == "succeeded"
    said = TrainingCompleted(model_version="v", digest="d", deploy=True)
    assert _derive(said, "training")["status"] == "deploying"
    deployed = _derive(ModelDeployed(deployment_id=uuid.uuid4(), endpoint="/e"), "deploying")
    assert deployed["status"] == "deployed" and deployed["finished_at"] == NOW
    assert _derive(RunCancelled(), "training")["status"] == "cancelled"
    # terminal statuses never change
    assert _derive(TrainingProgress(step=9), "cancelled") == {}
    assert _derive(TrainingStarted(world_size=1, nodes=[]), "failed") == {}


def test_failures_fail_unless_retryable() -> None:
    failed = _derive(NodesFailed(reason="no capacity"), "preparing")
    assert failed["status"] == "failed" and failed["error"] == "no capacity"
    retrying = _derive(
        ArtifactsFailed(source="hf://x", reason="timeout", retryable=True), "preparing"
    )
    assert "status" not in retrying and retrying["error"] == "timeout"


async def test_a_failing_fan_out_neither_loses_events_nor_wedges_the_writer(db: Database) -> None:
    """Live fan-out errors are logged; the events are stored, their handlers released, and
    later batches still go through."""
    import asyncio

    from services.gateway.writer import LogWriter

    project, run = _project(db)
    delivered: list[int] = []

    def on_stored(frame: Frame) -> None:
        if frame.seq == 1:
            raise RuntimeError("a broken subscriber")
        delivered.append(frame.seq)

    writer = LogWriter(db, on_stored=on_stored)
    task = asyncio.create_task(writer.run())
    try:
        first = new_event(TrainingProgress(step=1), project_id=project, run_id=run)
        await asyncio.wait_for(writer.submit(first), 10)
        second = new_event(TrainingProgress(step=2), project_id=project, run_id=run)
        await asyncio.wait_for(writer.submit(second), 10)
    finally:
        task.cancel()
    assert delivered == [2]
    assert [seq for seq, _ in events_after(db, project, after=0, limit=10)] == [1, 2]
