"""The artifact cache listing and dataset uploads: answered by the fetcher."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from services.gateway.deps import CurrentUser, GatewayDep
from services.gateway.downstream import parse_answer
from services.gateway.errors import responses
from services.gateway.schemas import ArtifactOut, UploadOut

__all__ = ["router"]

router = APIRouter(tags=["artifacts"])


@router.get("/api/artifacts", responses=responses(503))
async def list_artifacts(user: CurrentUser, gateway: GatewayDep) -> list[ArtifactOut]:
    """Cached models and datasets (content-addressed, encrypted at rest)."""
    body = await gateway.downstream.fetcher.json("GET", "/internal/artifacts", user_id=user.user_id)
    if not isinstance(body, list):
        body = []
    return [parse_answer(ArtifactOut, item, service="fetcher") for item in body]


@router.post(
    "/api/uploads",
    status_code=201,
    responses=responses(413, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def upload(
    request: Request,
    user: CurrentUser,
    gateway: GatewayDep,
    filename: Annotated[str, Query(min_length=1, max_length=255, pattern=r"^[^/\\\x00]+$")],
) -> UploadOut:
    """Upload a dataset file (raw body, streamed through to the fetcher, never held whole).

    Use the answer's ``uri`` (``upload://<id>``) as the spec's ``dataset``.
    """
    headers = {"Content-Type": request.headers.get("content-type", "application/octet-stream")}
    if "content-length" in request.headers:
        headers["Content-Length"] = request.headers["content-length"]
    body = await gateway.downstream.fetcher.json(
        "POST",
        "/internal/uploads",
        user_id=user.user_id,
        params={"filename": filename},
        headers=headers,
        content=request.stream(),
    )
    return parse_answer(UploadOut, body, service="fetcher")
