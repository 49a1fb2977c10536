"""Deployments as first-class objects (issue 16): list, stop, start, promote, settings,
and each project's live alias (``/api/projects/{id}/endpoint``) with roll back.

The trainer owns deployments; the gateway authorises the caller on the deployment's
project (viewers read; editors stop, start, promote, change settings, predict; another
user gets 404) and forwards through the typed calls of ``shared/contracts/deployments.py``
(an answer out of the contract is a 502). ``GET /api/deployments`` lists the deployments of
the projects the caller holds a role on.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from sqlmodel import col, select

from services.gateway.deps import CurrentUser, GatewayDep, ProjectEditor, ProjectViewer
from services.gateway.errors import responses
from services.gateway.identity import Identity
from services.gateway.models import Member, Project
from services.gateway.routes.serving import (
    ObjectId,
    authorize_deployment,
    deployment_out,
    forward_predict,
)
from services.gateway.schemas import (
    DeploymentOut,
    DeploymentPatchIn,
    EndpointOut,
    PredictIn,
    PredictOut,
    PromoteIn,
)
from shared.contracts import deployments as contract
from shared.db import run_sync
from shared.errors import Conflict

__all__ = ["router"]

router = APIRouter(tags=["deployments"])


def _memberships(
    gateway: GatewayDep, user: Identity, project_id: uuid.UUID | None
) -> dict[uuid.UUID, tuple[str, str]]:
    """project id -> (name, caller's role) of the projects the caller holds a role on."""
    with gateway.db.session() as session:
        query = select(Project.id, Project.name, Member.role).join(
            Member,
            (col(Member.project_id) == col(Project.id)) & (col(Member.user_id) == user.user_id),
        )
        if project_id is not None:
            query = query.where(col(Project.id) == project_id)
        return {pid: (name, role) for pid, name, role in session.execute(query).all()}


@router.get("/api/deployments", responses=responses(503))
async def list_deployments(
    user: CurrentUser,
    gateway: GatewayDep,
    project_id: Annotated[uuid.UUID | None, Query(description="only this project's")] = None,
) -> list[DeploymentOut]:
    """The deployments of the caller's projects (newest first), with state, model version,
    replicas and whether each is its project's live one."""
    projects = await run_sync(_memberships, gateway, user, project_id)
    records = await contract.list_deployments(
        gateway.downstream.trainer, sorted(projects, key=str), user_id=user.user_id
    )
    found: list[DeploymentOut] = []
    for record in records:
        if record.project_id in projects:  # the trainer answered only what was asked
            out = DeploymentOut.model_validate(record.model_dump())
            out.project_name, out.role = projects[record.project_id]
            found.append(out)
    found.sort(key=lambda d: (d.created_at is not None, d.created_at), reverse=True)
    return found


async def _editor_call(
    gateway: GatewayDep,
    user: Identity,
    deployment_id: str,
    change: Literal["stop", "start", "promote", "configure"],
    request: contract.PromoteRequest | contract.ConfigureRequest | None = None,
) -> DeploymentOut:
    """Authorise an editor on the deployment's project, ask the trainer for ``change``."""
    _, access = await authorize_deployment(
        gateway, user=user, deployment_id=deployment_id, need="editor"
    )
    record = await contract.change_deployment(
        gateway.downstream.trainer, deployment_id, change, user_id=user.user_id, request=request
    )
    return deployment_out(record, access)


@router.post("/api/deployments/{deployment_id}/stop", responses=responses(403, 404, 503))
async def stop_deployment(
    deployment_id: ObjectId, user: CurrentUser, gateway: GatewayDep
) -> DeploymentOut:
    """Stop the deployment's servers (editor); it can be started again."""
    return await _editor_call(gateway, user, deployment_id, "stop")


@router.post(
    "/api/deployments/{deployment_id}/start",
    status_code=202,
    responses=responses(403, 404, 503),
)
async def start_deployment(
    deployment_id: ObjectId, user: CurrentUser, gateway: GatewayDep
) -> DeploymentOut:
    """Start a stopped, failed or scaled-to-zero deployment again (editor)."""
    return await _editor_call(gateway, user, deployment_id, "start")


@router.post(
    "/api/deployments/{deployment_id}/promote",
    status_code=202,
    responses=responses(403, 404, 503),
)
async def promote_deployment(
    deployment_id: ObjectId,
    user: CurrentUser,
    gateway: GatewayDep,
    body: PromoteIn | None = None,
) -> DeploymentOut:
    """Make the deployment its project's live one (editor): at once when it serves, else
    once it is running (a stopped one is started). The project's other deployments then
    stop, unless ``keep_previous``."""
    request = contract.PromoteRequest.model_validate((body or PromoteIn()).model_dump())
    return await _editor_call(gateway, user, deployment_id, "promote", request)


@router.patch("/api/deployments/{deployment_id}", responses=responses(403, 404, 422, 503))
async def configure_deployment(
    deployment_id: ObjectId, body: DeploymentPatchIn, user: CurrentUser, gateway: GatewayDep
) -> DeploymentOut:
    """Change replicas, the scale-to-zero idle time or keep_previous (editor)."""
    # only the fields the caller set are sent (unset: unchanged)
    request = contract.ConfigureRequest.model_validate(body.model_dump(exclude_unset=True))
    return await _editor_call(gateway, user, deployment_id, "configure", request)


# --- the live alias -----------------------------------------------------------------


async def _endpoint(gateway: GatewayDep, project_id: uuid.UUID, user: Identity) -> EndpointOut:
    record = await contract.read_endpoint(
        gateway.downstream.trainer, project_id, user_id=user.user_id
    )
    return EndpointOut.model_validate(record.model_dump())


async def live_deployment_id(gateway: GatewayDep, project_id: uuid.UUID, user: Identity) -> str:
    """The project's live deployment (the caller is authorised on the project); 409 when
    the project has none."""
    endpoint = await _endpoint(gateway, project_id, user)
    if endpoint.deployment_id is None:
        raise Conflict("this project has no live deployment: deploy or promote one")
    return endpoint.deployment_id


@router.get("/api/projects/{project_id}/endpoint", responses=responses(404, 503))
async def read_endpoint(access: ProjectViewer, gateway: GatewayDep) -> EndpointOut:
    """The project's live alias: which deployment it serves, and the one roll back returns
    to (viewer)."""
    out = await _endpoint(gateway, access.project.id, access.identity)
    if out.deployment is not None:
        out.deployment.project_name, out.deployment.role = access.project.name, access.role
    return out


@router.post(
    "/api/projects/{project_id}/endpoint/predict",
    response_model=PredictOut,
    responses=responses(403, 404, 409, 503),
)
async def predict_live(access: ProjectEditor, body: PredictIn, gateway: GatewayDep) -> JSONResponse:
    """Run the project's live deployment on ``inputs`` (editor); ``X-Aidp-Deployment``
    names the deployment that answered."""
    dep_id = await live_deployment_id(gateway, access.project.id, access.identity)
    return await forward_predict(gateway, user=access.identity, deployment_id=dep_id, body=body)


@router.post(
    "/api/projects/{project_id}/endpoint/rollback",
    status_code=202,
    responses=responses(403, 404, 409, 503),
)
async def rollback_endpoint(access: ProjectEditor, gateway: GatewayDep) -> EndpointOut:
    """Point the live alias back at the deployment live before (editor): at once when it
    serves, else once it has started again; the one rolled back from then stops."""
    record = await contract.rollback_endpoint(
        gateway.downstream.trainer, access.project.id, user_id=access.identity.user_id
    )
    return EndpointOut.model_validate(record.model_dump())
