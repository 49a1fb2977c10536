"""Whose fetch a run's job is (its secrets, its share of the cache): the owner the event
names (``shared.events.run_owner``); an older ``RunRequested`` naming nobody keeps the
owner of the project's previous run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine
from sqlmodel import Session

from services.fetcher.handlers import record_job
from services.fetcher.models import FetchJob
from shared.events import ProjectCreated, RunRequested, new_event


@pytest.fixture
def session() -> Iterator[Session]:
    engine = create_engine("sqlite://")
    FetchJob.__table__.create(engine)  # type: ignore[attr-defined]
    with Session(engine) as s:
        yield s
    engine.dispose()


def _record(session: Session, payload: ProjectCreated | RunRequested, project: uuid.UUID) -> str:
    envelope = new_event(payload, project_id=project, run_id=uuid.uuid4())
    record_job(session, payload, envelope)
    session.commit()
    job = session.get(FetchJob, envelope.run_id)
    assert job is not None
    return str(job.owner_id)


def test_each_run_is_fetched_for_the_owner_its_event_names(session: Session) -> None:
    project, creator, member = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert _record(session, ProjectCreated(owner_id=creator, spec={}), project) == str(creator)
    rerun = RunRequested(spec={}, run_number=2, requested_by=member, owner_id=creator)
    assert _record(session, rerun, project) == str(creator)


def test_an_older_run_requested_keeps_the_previous_owner(session: Session) -> None:
    project, creator = uuid.uuid4(), uuid.uuid4()
    _record(session, ProjectCreated(owner_id=creator, spec={}), project)
    assert _record(session, RunRequested(spec={}, run_number=2), project) == str(creator)
