"""Model versions, downloads, deployments and predictions: answered by the trainer.

The gateway asks the trainer which project an object belongs to, authorises the caller
on that project (404 when they hold no role), then forwards the call. The trainer's answers
are read through their contract (``shared/contracts/deployments.py``, ``predict.py``): one
out of it is a 502, never passed on.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from services.gateway.deps import Access, CurrentUser, GatewayDep, ProjectViewer, authorize
from services.gateway.errors import responses
from services.gateway.identity import Identity
from services.gateway.schemas import (
    DeployIn,
    DeploymentOut,
    DeployOut,
    ModelOut,
    PredictIn,
    PredictOut,
)
from shared.contracts import deployments as contract
from shared.contracts.answers import parse_answer
from shared.db import run_sync
from shared.errors import NotFound

__all__ = ["router"]

router = APIRouter(tags=["models"])

ObjectId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,128}$")]


async def _authorize_on(
    gateway: GatewayDep, user: Identity, project_id: uuid.UUID, *, need: str, what: str
) -> Access:
    try:
        return await run_sync(
            authorize, gateway.db, identity=user, project_id=project_id, need=need
        )
    except NotFound:
        raise NotFound(f"{what} not found") from None


async def authorize_model(
    gateway: GatewayDep, *, user: Identity, model_id: str, need: str
) -> tuple[contract.ModelRecord, Access]:
    """The model (asked of the trainer) and the caller's access on its project (404 when
    either is missing)."""
    try:
        model = await contract.read_model(
            gateway.downstream.trainer, model_id, user_id=user.user_id
        )
    except NotFound:
        raise NotFound("model not found") from None
    return model, await _authorize_on(gateway, user, model.project_id, need=need, what="model")


async def authorize_deployment(
    gateway: GatewayDep, *, user: Identity, deployment_id: str, need: str
) -> tuple[contract.DeploymentRecord, Access]:
    """The deployment (asked of the trainer) and the caller's access on its project (404
    when either is missing)."""
    try:
        dep = await contract.read_deployment(
            gateway.downstream.trainer, deployment_id, user_id=user.user_id
        )
    except NotFound:
        raise NotFound("deployment not found") from None
    access = await _authorize_on(gateway, user, dep.project_id, need=need, what="deployment")
    return dep, access


def deployment_out(record: contract.DeploymentRecord, access: Access) -> DeploymentOut:
    """The public view of the trainer's record, with the project's name and caller's role."""
    out = DeploymentOut.model_validate(record.model_dump())
    out.project_name, out.role = access.project.name, access.role
    return out


@router.get("/api/projects/{project_id}/models", responses=responses(404, 503))
async def list_models(access: ProjectViewer, gateway: GatewayDep) -> list[ModelOut]:
    """Model versions of the project, with lineage."""
    models = await contract.list_models(
        gateway.downstream.trainer, access.project.id, user_id=access.identity.user_id
    )
    return [ModelOut.model_validate(m.model_dump()) for m in models]


@router.get(
    "/api/models/{model_id}/download",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-tar": {}}}, **responses(404, 503)},
)
async def download_model(
    model_id: ObjectId, user: CurrentUser, gateway: GatewayDep
) -> StreamingResponse:
    """The model's files as a tar stream (decrypted by the trainer)."""
    await authorize_model(gateway, user=user, model_id=model_id, need="viewer")
    upstream = await gateway.downstream.trainer.open_stream(
        "GET", f"/internal/models/{model_id}/download", user_id=user.user_id
    )
    headers = {
        k: v
        for k, v in upstream.headers.items()
        if k.lower() in ("content-length", "content-disposition", "etag")
    }
    return StreamingResponse(
        upstream.aiter_raw(),
        status_code=200,
        media_type=upstream.headers.get("content-type", "application/x-tar"),
        headers=headers,
        background=BackgroundTask(upstream.aclose),
    )


@router.post(
    "/api/models/{model_id}/deploy", status_code=202, responses=responses(403, 404, 409, 503)
)
async def deploy_model(
    model_id: ObjectId, user: CurrentUser, gateway: GatewayDep, options: DeployIn | None = None
) -> DeployOut:
    """Deploy a model version behind an inference endpoint (editor). Once running it
    becomes the project's live endpoint and the project's other deployments stop, unless
    ``keep_previous`` (or ``promote: false``)."""
    await authorize_model(gateway, user=user, model_id=model_id, need="editor")
    request = contract.DeployRequest.model_validate((options or DeployIn()).model_dump())
    answer = await contract.deploy_model(
        gateway.downstream.trainer, model_id, request, user_id=user.user_id
    )
    return DeployOut.model_validate(answer.model_dump())


@router.get("/api/deployments/{deployment_id}", responses=responses(404, 503))
async def get_deployment(
    deployment_id: ObjectId, user: CurrentUser, gateway: GatewayDep
) -> DeploymentOut:
    """One deployment: state, model version, replicas, whether it is live (viewer)."""
    record, access = await authorize_deployment(
        gateway, user=user, deployment_id=deployment_id, need="viewer"
    )
    return deployment_out(record, access)


@router.delete(
    "/api/deployments/{deployment_id}",
    status_code=204,
    response_class=Response,
    responses=responses(403, 404, 503),
)
async def delete_deployment(
    deployment_id: ObjectId, user: CurrentUser, gateway: GatewayDep
) -> Response:
    """Stop serving (editor)."""
    await authorize_deployment(gateway, user=user, deployment_id=deployment_id, need="editor")
    await gateway.downstream.trainer.request(
        "DELETE", f"/internal/deployments/{deployment_id}", user_id=user.user_id
    )
    return Response(status_code=204)


#: Headers of the trainer's answer a caller sees: which replica answered, whether the
#: request waited for a cold start (a deployment scaled to zero).
PASSED_HEADERS = ("X-Aidp-Replica", "X-Aidp-Cold-Start")


async def forward_predict(
    gateway: GatewayDep, *, user: Identity, deployment_id: str, body: PredictIn
) -> JSONResponse:
    """Send ``inputs`` to the deployment (already authorised); its outputs, with the
    trainer's replica and cold-start headers and ``X-Aidp-Deployment``."""
    upstream = await gateway.downstream.trainer.request(
        "POST",
        f"/internal/deployments/{deployment_id}/predict",
        user_id=user.user_id,
        json=body.model_dump(mode="json"),
    )
    try:
        answer = upstream.json()
    except ValueError:
        answer = None
    out = parse_answer(PredictOut, answer, service=gateway.downstream.trainer.name)
    headers = {h: upstream.headers[h] for h in PASSED_HEADERS if h in upstream.headers}
    headers["X-Aidp-Deployment"] = deployment_id
    return JSONResponse(out.model_dump(mode="json"), headers=headers)


@router.post(
    "/api/deployments/{deployment_id}/predict",
    response_model=PredictOut,
    responses=responses(403, 404, 409, 503),
)
async def predict(
    deployment_id: ObjectId, body: PredictIn, user: CurrentUser, gateway: GatewayDep
) -> JSONResponse:
    """Run the deployed model on ``inputs`` (editor). A deployment scaled to zero starts
    first (the answer then carries ``X-Aidp-Cold-Start: true``); ``X-Aidp-Replica`` says
    which server answered."""
    await authorize_deployment(gateway, user=user, deployment_id=deployment_id, need="editor")
    return await forward_predict(gateway, user=user, deployment_id=deployment_id, body=body)
