"""Event handlers of the fetcher service: thin, they record jobs and start them.

Each handler is a domain function on :class:`shared.service.inbox.Inbox` (claim, apply,
commit, publish in one place); ``then`` starts or cancels the background job after the
commit.
"""

from __future__ import annotations

import json
import uuid

from sqlmodel import Session, select

from services.fetcher.jobs import JobRunner
from services.fetcher.models import FETCH_JOB, FetchJob, FetchJobState
from shared.errors import InvalidInput
from shared.events import (
    Envelope,
    ProjectCreated,
    ProjectDeleted,
    RunCancelled,
    RunRequested,
    run_owner,
)
from shared.runtime import EventHandler, ServiceRuntime
from shared.service.clock import utcnow
from shared.service.inbox import Inbox

__all__ = ["build_handlers"]


def build_handlers(runtime: ServiceRuntime, runner: JobRunner) -> dict[str, EventHandler]:
    """Event type -> handler; the service queue is bound to exactly these types."""
    inbox = Inbox(runtime)

    async def start(recorded: bool, envelope: Envelope) -> None:
        if recorded and envelope.run_id is not None:
            runner.start(envelope.run_id)

    async def cancel(run_ids: list[uuid.UUID], _envelope: Envelope) -> None:
        for run_id in run_ids:
            await runner.cancel(run_id)

    inbox.handles(ProjectCreated, RunRequested, then=start)(record_job)
    inbox.handles(RunCancelled, then=cancel)(cancel_run)
    inbox.handles(ProjectDeleted, then=cancel)(cancel_project)
    return inbox.handlers()


def record_job(s: Session, event: ProjectCreated | RunRequested, envelope: Envelope) -> bool:
    """Record the fetch job a run asks for (once per run)."""
    if envelope.run_id is None:
        raise InvalidInput(f"{envelope.type} without run_id")
    named = run_owner(event)
    owner = str(named) if named is not None else None
    if owner is None and envelope.project_id is not None:  # an older producer: keep the
        # owner of the project's previous run
        previous = s.exec(
            select(FetchJob).where(FetchJob.project_id == envelope.project_id)
        ).first()
        owner = previous.owner_id if previous else None
    if s.get(FetchJob, envelope.run_id) is None:
        s.add(
            FetchJob(
                run_id=envelope.run_id,
                project_id=envelope.project_id,
                owner_id=owner,
                spec=json.dumps(event.spec),
                cause=envelope.model_dump_json(),
            )
        )
    return True


def cancel_run(s: Session, _event: RunCancelled, envelope: Envelope) -> list[uuid.UUID]:
    """Cancel the run's pending job; the runs whose running jobs to stop."""
    run_ids = [envelope.run_id] if envelope.run_id is not None else []
    _cancel_jobs(s, run_ids)
    return run_ids


def cancel_project(s: Session, event: ProjectDeleted, envelope: Envelope) -> list[uuid.UUID]:
    """Cancel every job of the project (the event's runs and those recorded here)."""
    run_ids = set(event.run_ids)
    if envelope.project_id is not None:
        run_ids |= set(
            s.exec(select(FetchJob.run_id).where(FetchJob.project_id == envelope.project_id))
        )
    ordered = sorted(run_ids)
    _cancel_jobs(s, ordered)
    return ordered


def _cancel_jobs(s: Session, run_ids: list[uuid.UUID]) -> None:
    """Mark the pending jobs of ``run_ids`` cancelled."""
    for run_id in run_ids:
        job = s.get(FetchJob, run_id)
        if job is not None and job.status == FetchJobState.PENDING:
            FETCH_JOB.transition(job, FetchJobState.CANCELLED, attr="status")
            job.updated_at = utcnow()
