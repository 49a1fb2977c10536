"""The artifact cache listing and dataset uploads: answered by the fetcher."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlmodel import col, select

from services.gateway.deps import CurrentUser, Gateway, GatewayDep
from services.gateway.downstream import parse_answer
from services.gateway.errors import responses
from services.gateway.models import Member
from services.gateway.schemas import ArtifactOut, UploadOut
from shared.db import run_sync

__all__ = ["router"]

router = APIRouter(tags=["artifacts"])


def _project_ids(gateway: Gateway, user_id: uuid.UUID) -> list[str]:
    """The projects the caller holds a role on (any role)."""
    with gateway.db.session() as s:
        rows = s.exec(select(Member.project_id).where(col(Member.user_id) == user_id)).all()
    return sorted(str(pid) for pid in rows)


@router.get("/api/artifacts", responses=responses(503))
async def list_artifacts(user: CurrentUser, gateway: GatewayDep) -> list[ArtifactOut]:
    """Cached models and datasets the caller's projects use (platform admins: all of them;
    content-addressed, encrypted at rest). An URL source is shown without its query string;
    another user's upload without its digest."""
    params: dict[str, Any]
    if user.is_admin:
        params = {"all": "true"}
    else:
        params = {"project_id": await run_sync(_project_ids, gateway, user.user_id)}
    body = await gateway.downstream.fetcher.json(
        "GET", "/internal/artifacts", user_id=user.user_id, params=params
    )
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
