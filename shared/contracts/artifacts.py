"""The fetcher's artifact listing and uploads for the gateway (``services/fetcher/api.py``).

- ``GET /internal/artifacts?project_id=…&all=`` → a list of :class:`ArtifactRow`;
- ``POST /internal/uploads?filename=`` (the raw body, streamed) → 201 :class:`UploadAnswer`.

The upload's body stays a stream end to end; only its file name and the JSON answer are
declared here. The fetcher declares its routes with these models; the gateway reads the
answers through :func:`list_artifacts` and :func:`upload`, so an answer out of the
contract is a 502 naming the fetcher.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from shared.contracts.answers import JsonCaller, parse_answer, parse_answers
from shared.errors import InvalidInput

__all__ = [
    "ARTIFACTS_PATH",
    "FILENAME_PATTERN",
    "MAX_FILENAME_LENGTH",
    "UPLOADS_PATH",
    "ArtifactRow",
    "UploadAnswer",
    "check_upload_filename",
    "list_artifacts",
    "upload",
]

ARTIFACTS_PATH = "/internal/artifacts"
UPLOADS_PATH = "/internal/uploads"

#: an upload's file name: at most this long, no path separator, no NUL
MAX_FILENAME_LENGTH = 255
FILENAME_PATTERN = r"^[^/\\\x00]+$"


class ArtifactRow(BaseModel):
    """One cached model or dataset. Another user's upload comes without its digest,
    revision and cache key (theirs to know); an URL source without its query string."""

    source: str
    kind: str
    resolved_revision: str | None = None
    digest: str | None = None
    size_bytes: int
    cache_key: str | None = None
    last_used_at: datetime | None = None
    pinned: bool = False


class UploadAnswer(BaseModel):
    """A stored upload; ``uri`` (``upload://<id>``) is what a spec's ``dataset`` names."""

    id: str
    uri: str = Field(pattern=r"^upload://")
    size_bytes: int = Field(ge=0)
    digest: str
    filename: str


def check_upload_filename(filename: str) -> str:
    """``filename`` when it is a plain file name (both sides refuse the same ones); else
    ``InvalidInput``."""
    plain = (
        0 < len(filename) <= MAX_FILENAME_LENGTH
        and not any(c in filename for c in "/\\\x00")
        and filename not in (".", "..")
    )
    if not plain:
        raise InvalidInput("filename must be a plain file name")
    return filename


async def list_artifacts(
    fetcher: JsonCaller, *, user_id: uuid.UUID, project_ids: list[str] | None
) -> list[ArtifactRow]:
    """The artifacts the runs of ``project_ids`` use (None: all of them, the admin view)."""
    params: dict[str, Any] = {"all": "true"} if project_ids is None else {"project_id": project_ids}
    body = await fetcher.json("GET", ARTIFACTS_PATH, user_id=user_id, params=params)
    return parse_answers(ArtifactRow, body, service=fetcher.name)


async def upload(
    fetcher: JsonCaller,
    *,
    user_id: uuid.UUID,
    filename: str,
    content: AsyncIterable[bytes],
    headers: dict[str, str],
) -> UploadAnswer:
    """Stream ``content`` into the fetcher's store as ``user_id``'s upload ``filename``."""
    body = await fetcher.json(
        "POST",
        UPLOADS_PATH,
        user_id=user_id,
        params={"filename": check_upload_filename(filename)},
        headers=headers,
        content=content,
    )
    return parse_answer(UploadAnswer, body, service=fetcher.name)
