"""Event handlers of the fetcher service: thin, they record jobs and start them."""

from __future__ import annotations

import uuid

from sqlmodel import select

from services.fetcher.jobs import JobRunner
from services.fetcher.models import FetchJob, utcnow
from shared.db import run_sync
from shared.errors import InvalidInput
from shared.events import (
    Envelope,
    ProjectCreated,
    ProjectDeleted,
    RunRequested,
    parse_payload,
)
from shared.outbox import claim_inbox
from shared.runtime import EventHandler, ServiceRuntime

__all__ = ["build_handlers"]


def build_handlers(runtime: ServiceRuntime, runner: JobRunner) -> dict[str, EventHandler]:
    """Event type -> handler; the service queue is bound to exactly these types."""

    async def on_run_started(envelope: Envelope) -> None:
        if envelope.run_id is None:
            raise InvalidInput(f"{envelope.type} without run_id")
        if await run_sync(_record_job, runtime, envelope):
            runner.start(envelope.run_id)

    async def on_run_cancelled(envelope: Envelope) -> None:
        if envelope.run_id is not None:
            if await run_sync(_cancel_jobs, runtime, [envelope.run_id], envelope):
                await runner.cancel(envelope.run_id)

    async def on_project_deleted(envelope: Envelope) -> None:
        payload = parse_payload(envelope)
        run_ids = set(payload.run_ids) if isinstance(payload, ProjectDeleted) else set()
        if envelope.project_id is not None:
            run_ids |= await run_sync(_project_jobs, runtime, envelope.project_id)
        ordered = sorted(run_ids)
        if await run_sync(_cancel_jobs, runtime, ordered, envelope):
            for run_id in ordered:
                await runner.cancel(run_id)

    return {
        "ProjectCreated": on_run_started,
        "RunRequested": on_run_started,
        "RunCancelled": on_run_cancelled,
        "ProjectDeleted": on_project_deleted,
    }


def _record_job(runtime: ServiceRuntime, envelope: Envelope) -> bool:
    """Record the fetch job a run asks for; False when the event was handled already."""
    assert envelope.run_id is not None
    payload = parse_payload(envelope)
    with runtime.db.session() as s:
        if not claim_inbox(s, envelope, service=runtime.name):
            return False
        if isinstance(payload, ProjectCreated):
            owner: str | None = str(payload.owner_id)
            spec = payload.spec
        elif isinstance(payload, RunRequested):
            spec = payload.spec
            owner = str(payload.requested_by) if payload.requested_by else None
            if owner is None and envelope.project_id is not None:
                previous = s.exec(
                    select(FetchJob).where(FetchJob.project_id == envelope.project_id)
                ).first()
                owner = previous.owner_id if previous else None
        else:
            raise InvalidInput(f"unexpected event {envelope.type}")
        if s.get(FetchJob, envelope.run_id) is None:
            s.add(
                FetchJob(
                    run_id=envelope.run_id,
                    project_id=envelope.project_id,
                    owner_id=owner,
                    spec=_json(spec),
                    cause=envelope.model_dump_json(),
                )
            )
        s.commit()
    return True


def _project_jobs(runtime: ServiceRuntime, project_id: uuid.UUID) -> set[uuid.UUID]:
    with runtime.db.session() as s:
        return set(s.exec(select(FetchJob.run_id).where(FetchJob.project_id == project_id)))


def _cancel_jobs(runtime: ServiceRuntime, run_ids: list[uuid.UUID], envelope: Envelope) -> bool:
    """Mark the pending jobs of ``run_ids`` cancelled; False when the event was handled
    already (the caller then leaves the running jobs alone)."""
    with runtime.db.session() as s:
        if not claim_inbox(s, envelope, service=runtime.name):
            return False
        for run_id in run_ids:
            job = s.get(FetchJob, run_id)
            if job is not None and job.status == "pending":
                job.status, job.updated_at = "cancelled", utcnow()
        s.commit()
    return True


def _json(spec: dict[str, object]) -> str:
    import json

    return json.dumps(spec)
