"""The artifact cache listing and dataset uploads: answered by the fetcher, read through
its contract (``shared/contracts/artifacts.py``; an answer out of it is a 502)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlmodel import col, select

from services.gateway.deps import CurrentUser, Gateway, GatewayDep
from services.gateway.errors import responses
from services.gateway.models import Member
from services.gateway.schemas import ArtifactOut, UploadOut
from shared.contracts import artifacts as contract
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
    projects = None if user.is_admin else await run_sync(_project_ids, gateway, user.user_id)
    rows = await contract.list_artifacts(
        gateway.downstream.fetcher, user_id=user.user_id, project_ids=projects
    )
    return [ArtifactOut.model_validate(row.model_dump()) for row in rows]


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
    filename: Annotated[
        str,
        Query(
            min_length=1,
            max_length=contract.MAX_FILENAME_LENGTH,
            pattern=contract.FILENAME_PATTERN,
        ),
    ],
) -> UploadOut:
    """Upload a dataset file (raw body, streamed through to the fetcher, never held whole).

    Use the answer's ``uri`` (``upload://<id>``) as the spec's ``dataset``.
    """
    headers = {"Content-Type": request.headers.get("content-type", "application/octet-stream")}
    if "content-length" in request.headers:
        headers["Content-Length"] = request.headers["content-length"]
    stored = await contract.upload(
        gateway.downstream.fetcher,
        user_id=user.user_id,
        filename=filename,
        content=request.stream(),
        headers=headers,
    )
    return UploadOut.model_validate(stored.model_dump())
