"""Runs of a project: start, list, read, cancel; their events, logs and environment."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response

from services.gateway import projects as service
from services.gateway import reads
from services.gateway.cloud_caps import check_cloud_caps
from services.gateway.deps import CurrentUser, GatewayDep, ProjectEditor, RunEditor, RunViewer
from services.gateway.downstream import parse_answer
from services.gateway.errors import SPEC_CHANGED_RESPONSE, responses
from services.gateway.eventlog import events_after
from services.gateway.models import Run
from services.gateway.schemas import (
    EnvironmentOut,
    EventPage,
    LogLine,
    LogPage,
    RunIn,
    RunOut,
    StoredEvent,
)
from shared.db import run_sync
from shared.spec import ProjectSpec

__all__ = ["router"]

router = APIRouter(tags=["runs"])

After = Annotated[int, Query(ge=0, le=2**62, description="Only events with a larger seq.")]


def _stored_spec(spec: dict[str, Any]) -> ProjectSpec | None:
    """The project's stored spec, or None if it no longer validates (the start reports it)."""
    try:
        return ProjectSpec.model_validate(spec)
    except ValueError:
        return None


def run_out(run: Run) -> RunOut:
    return RunOut.model_validate(run, from_attributes=True)


@router.post(
    "/api/projects/{project_id}/runs",
    status_code=201,
    responses={**responses(403, 404, 409, 422, 429), **SPEC_CHANGED_RESPONSE},
)
async def request_run(
    access: ProjectEditor,
    gateway: GatewayDep,
    body: Annotated[RunIn | None, Body()] = None,
) -> RunOut:
    """Start the next run, with the project's spec or an override (editor).

    The stored spec runs with your credentials only if you wrote it or approved it: if
    someone else changed it since, the answer is 409 ``spec_changed`` with the diff, and
    the start goes through with ``confirm_spec_hash`` equal to the current spec's hash.
    """
    spec = body.spec if body and body.spec else _stored_spec(access.project.spec)
    if spec is not None:
        await check_cloud_caps(gateway.downstream.provisioner, access.identity.user_id, spec)
    run = await run_sync(
        service.request_run,
        gateway.runtime,
        access=access,
        spec=body.spec if body else None,
        confirm_spec_hash=body.confirm_spec_hash if body else None,
        max_active_runs=gateway.settings.user_max_active_runs,
    )
    return run_out(run)


@router.get(
    "/api/projects/{project_id}/runs", response_model=list[RunOut], responses=responses(404)
)
async def list_runs(project_id: uuid.UUID, user: CurrentUser, gateway: GatewayDep) -> Response:
    """The project's runs, newest first."""
    rows = await reads.project_runs(gateway.db.aio, user=user, project_id=project_id)
    return reads.json_response(rows)


@router.get("/api/runs/{run_id}", response_model=RunOut, responses=responses(404))
async def get_run(run: reads.RunRead) -> Response:
    return reads.json_response(run.row)


@router.post("/api/runs/{run_id}/cancel", responses=responses(403, 404, 409))
def cancel_run(access: RunEditor, gateway: GatewayDep) -> RunOut:
    """Cancel the run (editor); 409 if it already finished."""
    run = service.cancel_run(
        gateway.runtime, run_id=access.run.id, by=access.access.identity.user_id
    )
    return run_out(run)


@router.get("/api/runs/{run_id}/events", responses=responses(404))
def run_events(
    access: RunViewer,
    gateway: GatewayDep,
    after: After = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> EventPage:
    """The run's stored events with seq > ``after``, oldest first (seq is per project)."""
    rows = events_after(
        gateway.db, access.run.project_id, after=after, limit=limit, run_id=access.run.id
    )
    events = [StoredEvent(seq=seq, event=json.loads(body)) for seq, body in rows]
    return EventPage(events=events, next_after=rows[-1][0] if rows else after)


@router.get("/api/runs/{run_id}/logs", responses=responses(404))
def run_logs(
    access: RunViewer,
    gateway: GatewayDep,
    after: After = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Events (batches) per page.")] = 200,
) -> LogPage:
    """Log lines of the run (from its ``TrainingLog`` events) after event seq ``after``."""
    rows = events_after(
        gateway.db,
        access.run.project_id,
        after=after,
        limit=limit,
        run_id=access.run.id,
        types=["TrainingLog"],
    )
    lines: list[LogLine] = []
    for seq, body in rows:
        payload: dict[str, Any] = json.loads(body).get("payload", {})
        for text in payload.get("lines", []):
            lines.append(
                LogLine(
                    seq=seq,
                    node=str(payload.get("node", "")),
                    stream=str(payload.get("stream", "stdout")),
                    text=str(text),
                )
            )
    return LogPage(lines=lines, next_after=rows[-1][0] if rows else after)


@router.get("/api/runs/{run_id}/environment", responses=responses(404, 503))
async def run_environment(access: RunViewer, gateway: GatewayDep) -> EnvironmentOut:
    """The locked environment the run's nodes use (from the provisioner)."""
    body = await gateway.downstream.provisioner.json(
        "GET",
        f"/internal/runs/{access.run.id}/environment",
        user_id=access.access.identity.user_id,
    )
    return parse_answer(EnvironmentOut, body, service="provisioner")
