"""Internal HTTP API: uploads (streamed into the encrypted store) and the artifact list.

Their query, answers and file-name rule are ``shared/contracts/artifacts.py``'s, which the
gateway reads them with.
"""

from __future__ import annotations

import asyncio
import queue
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request

from services.fetcher.cache import ArtifactCache
from services.fetcher.models import Upload
from shared.contracts.artifacts import (
    ARTIFACTS_PATH,
    MAX_FILENAME_LENGTH,
    UPLOADS_PATH,
    ArtifactRow,
    UploadAnswer,
    check_upload_filename,
)
from shared.db import run_sync
from shared.errors import Unauthenticated
from shared.service_auth import require_caller
from shared.store import Manifest, ManifestFile

__all__ = ["build_router"]

_END = object()
_PREFIX = "/internal"


def _route(path: str) -> str:
    """A contract's path as declared under the router's prefix."""
    return path.removeprefix(_PREFIX)


def build_router(cache_of: Any) -> APIRouter:
    """Routes under ``/internal``; ``cache_of(request)`` returns the ArtifactCache."""
    # only the gateway calls these (service token, shared.service_auth)
    router = APIRouter(prefix=_PREFIX, tags=["fetcher"], dependencies=[require_caller("gateway")])

    @router.post(_route(UPLOADS_PATH), status_code=201)
    async def upload(
        request: Request,
        filename: Annotated[str, Query(min_length=1, max_length=MAX_FILENAME_LENGTH)],
        user: Annotated[str | None, Header(alias="X-Aidp-User")] = None,
    ) -> UploadAnswer:
        if not user:
            raise Unauthenticated("X-Aidp-User is required")
        check_upload_filename(filename)  # before the body is read
        cache: ArtifactCache = cache_of(request)
        quota = cache.quota
        # refused before the body is read when its length is declared, else while counting
        declared = request.headers.get("content-length")
        incoming = int(declared) if declared and declared.isdigit() else 0
        await run_sync(quota.check_upload, user, incoming)
        room = None if quota.unlimited else quota.limit - await run_sync(quota.usage, user)
        digest, size = await _stream_into_store(request, cache, room=room, user=user)
        upload_id = str(uuid.uuid4())
        name = f"upload://{upload_id}"
        upload = Upload(
            id=upload_id, owner_id=user, filename=filename, digest=digest, size_bytes=size
        )
        await run_sync(_save, cache, upload)
        files = [ManifestFile(filename, digest, size)]
        manifest_key = await asyncio.to_thread(
            cache.store.put_manifest, Manifest(source=name, revision=digest, files=files)
        )
        await run_sync(
            cache.record,
            key=f"{name}@{digest}",
            source=name,
            kind="dataset",
            revision=digest,
            manifest_key=manifest_key,
            digest=digest,
            files=files,
            owner_id=user,
        )
        return UploadAnswer(
            id=upload_id, uri=name, size_bytes=size, digest=digest, filename=filename
        )

    @router.get(_route(ARTIFACTS_PATH), response_model=list[ArtifactRow])
    async def artifacts(
        request: Request,
        project_id: Annotated[list[uuid.UUID] | None, Query()] = None,
        all_: Annotated[bool, Query(alias="all")] = False,
        user: Annotated[str | None, Header(alias="X-Aidp-User")] = None,
    ) -> list[dict[str, Any]]:
        """Artifacts used by runs of ``project_id`` (repeatable), or every one with
        ``all=true`` (the gateway's admin view); neither: none."""
        cache: ArtifactCache = cache_of(request)
        return await run_sync(
            cache.listing, project_ids=None if all_ else (project_id or []), user_id=user
        )

    return router


def _save(cache: ArtifactCache, upload: Upload) -> None:
    with cache.db.session() as s:
        s.add(upload)
        s.commit()


async def _stream_into_store(
    request: Request, cache: ArtifactCache, *, room: int | None, user: str
) -> tuple[str, int]:
    """Encrypt the request body into the store as it arrives (bounded buffer, no temp file).

    ``room``: bytes left in ``user``'s storage quota (None: unlimited); a body growing past
    it is cut off with :class:`QuotaExceeded` (413) and its partial blob removed."""
    chunks: queue.Queue[object] = queue.Queue(maxsize=8)

    def source() -> Iterator[bytes]:
        while True:
            item = chunks.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]

    writer = asyncio.create_task(asyncio.to_thread(cache.store.put_stream, source()))
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if room is not None and received > room:
                raise cache.quota.upload_refused(received, used=cache.quota.limit - room)
            if chunk:
                while True:
                    try:
                        chunks.put_nowait(chunk)
                        break
                    except queue.Full:
                        if writer.done():
                            break
                        await asyncio.sleep(0.005)
        chunks.put(_END)
    except BaseException as exc:
        # the body was cut off (over its limit) or the client went away: the writer must
        # see the failure (a full queue would leave it waiting for ever) and remove its
        # partial file before we answer, so nothing of the body is left behind
        while not writer.done():
            try:
                chunks.put_nowait(exc)
                break
            except queue.Full:
                await asyncio.sleep(0.005)
        await asyncio.gather(writer, return_exceptions=True)
        raise
    return await writer
