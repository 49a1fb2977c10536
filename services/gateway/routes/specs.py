"""``POST /api/specs/validate`` (check a spec, errors with paths, diff against the last
run's), ``GET /api/runs/{id}/spec`` (the spec snapshot a run ran with) and
``POST /api/projects/{id}/clone`` (a new project of yours from its spec)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.gateway import projects as service
from services.gateway.cloud_caps import check_cloud_caps
from services.gateway.deps import CurrentUser, GatewayDep, ProjectViewer, RunViewer, authorize
from services.gateway.errors import responses
from services.gateway.models import Project, Run
from services.gateway.routes.projects import project_out
from services.gateway.schemas import ProjectOut
from services.gateway.spec_check import errors_of, parse_yaml
from shared.db import run_sync
from shared.errors import InvalidInput
from shared.spec import ProjectSpec

__all__ = ["router"]

router = APIRouter(tags=["projects"])


class SpecCheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    yaml: str | None = Field(None, max_length=300_000, description="The spec as YAML text.")
    spec: dict[str, Any] | None = Field(None, description="The spec as JSON.")
    project_id: uuid.UUID | None = Field(
        None, description="Also diff against this project's latest run's spec (viewer)."
    )

    @model_validator(mode="after")
    def _one(self) -> SpecCheckIn:
        if (self.yaml is None) == (self.spec is None):
            raise ValueError("send exactly one of yaml or spec")
        return self


class SpecErrorOut(BaseModel):
    path: str = Field(description="Dotted path of the field ('' for the whole document).")
    message: str
    line: int | None = Field(None, description="YAML line (syntax errors).")


class SpecCheckOut(BaseModel):
    valid: bool
    errors: list[SpecErrorOut]
    spec: dict[str, Any] | None = Field(None, description="The normalised spec when valid.")
    diff: str | None = Field(
        None, description="Unified YAML diff from the latest run's spec (with project_id)."
    )


class CloneIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    spec: ProjectSpec | None = Field(None, description="Start from this spec instead.")


def _latest_run_spec(gateway: Any, project_id: uuid.UUID) -> dict[str, Any] | None:
    """The spec of the project's latest run (its stored spec before any run)."""
    with gateway.db.session() as session:
        project = session.get(Project, project_id)
        if project is None:
            return None
        project_spec = project.spec
        run = session.get(Run, project.current_run_id) if project.current_run_id else None
    return run.spec if run is not None else project_spec


@router.post("/api/specs/validate", responses=responses(404))
async def validate_spec(body: SpecCheckIn, user: CurrentUser, gateway: GatewayDep) -> SpecCheckOut:
    """Check a spec as a run start would, starting nothing: 200 with ``valid`` and every
    error with its path (422 only for a malformed request)."""
    if body.yaml is not None:
        data, errors = parse_yaml(body.yaml)
    else:
        data, errors = body.spec, []
    spec_json: dict[str, Any] | None = None
    if not errors:
        spec_json, errors = errors_of(data)
    if spec_json is not None:
        try:
            await check_cloud_caps(
                gateway.downstream.provisioner, user.user_id, ProjectSpec.model_validate(spec_json)
            )
        except InvalidInput as exc:
            path = "resources.accelerator" if "accelerator" in exc.message else "resources"
            errors.append({"path": path, "message": exc.message.removeprefix(f"{path}: ")})
    diff = None
    if body.project_id is not None and isinstance(data, dict):
        await run_sync(
            authorize, gateway.db, identity=user, project_id=body.project_id, need="viewer"
        )
        old = await run_sync(_latest_run_spec, gateway, body.project_id)
        diff = service.spec_diff(old, spec_json or data)
    return SpecCheckOut(
        valid=not errors,
        errors=[SpecErrorOut(**e) for e in errors],
        spec=spec_json if not errors else None,
        diff=diff,
    )


class RunSpecOut(BaseModel):
    run_id: uuid.UUID
    number: int
    spec: dict[str, Any]


@router.get("/api/runs/{run_id}/spec", responses=responses(404))
def run_spec(access: RunViewer) -> RunSpecOut:
    """The spec this run ran with (stored with the run when it started)."""
    run = access.run
    return RunSpecOut(run_id=run.id, number=run.number, spec=run.spec)


@router.post(
    "/api/projects/{project_id}/clone", status_code=201, responses=responses(403, 404, 409, 429)
)
async def clone_project(body: CloneIn, access: ProjectViewer, gateway: GatewayDep) -> ProjectOut:
    """A new project owned by you with this project's spec (or ``spec``), its run 1
    started (viewer of the source; 409 when you already have a project of that name)."""
    spec = body.spec
    if spec is None:
        try:
            spec = ProjectSpec.model_validate(access.project.spec)
        except ValueError as exc:
            raise InvalidInput(
                f"spec: the project's spec no longer validates ({str(exc)[:300]}); "
                "send a corrected one in spec"
            ) from None
    await check_cloud_caps(gateway.downstream.provisioner, access.identity.user_id, spec)
    project, run = await run_sync(
        service.create_project,
        gateway.runtime,
        owner=access.identity,
        name=body.name,
        spec=spec,
        max_active_runs=gateway.settings.user_max_active_runs,
    )
    return project_out(project, role="owner", status=run.status)
