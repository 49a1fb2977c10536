"""Event handlers of the fetcher service: thin, they record jobs and start them."""

from __future__ import annotations

import uuid

from sqlmodel import select

from services.fetcher.jobs import JobRunner
from services.fetcher.models import FetchJob, utcnow
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
        payload = parse_payload(envelope)
        if envelope.run_id is None:
            raise InvalidInput(f"{envelope.type} without run_id")
        with runtime.db.session() as s:
            if not claim_inbox(s, envelope, service=runtime.name):
                return
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
        runner.start(envelope.run_id)

    async def on_run_cancelled(envelope: Envelope) -> None:
        if envelope.run_id is not None:
            _cancel(runtime, runner, [envelope.run_id], envelope)

    async def on_project_deleted(envelope: Envelope) -> None:
        payload = parse_payload(envelope)
        run_ids = set(payload.run_ids) if isinstance(payload, ProjectDeleted) else set()
        if envelope.project_id is not None:
            with runtime.db.session() as s:
                run_ids |= set(
                    s.exec(
                        select(FetchJob.run_id).where(FetchJob.project_id == envelope.project_id)
                    )
                )
        _cancel(runtime, runner, sorted(run_ids), envelope)

    return {
        "ProjectCreated": on_run_started,
        "RunRequested": on_run_started,
        "RunCancelled": on_run_cancelled,
        "ProjectDeleted": on_project_deleted,
    }


def _cancel(
    runtime: ServiceRuntime, runner: JobRunner, run_ids: list[uuid.UUID], envelope: Envelope
) -> None:
    with runtime.db.session() as s:
        if not claim_inbox(s, envelope, service=runtime.name):
            return
        for run_id in run_ids:
            job = s.get(FetchJob, run_id)
            if job is not None and job.status == "pending":
                job.status, job.updated_at = "cancelled", utcnow()
        s.commit()
    for run_id in run_ids:
        runner.cancel(run_id)


def _json(spec: dict[str, object]) -> str:
    import json

    return json.dumps(spec)
