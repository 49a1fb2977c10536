"""The trainer's internal HTTP API (called by the gateway, which authorises callers).

Its request bodies and answers are ``shared/contracts/deployments.py``'s (predictions:
``shared/contracts/predict.py``), which the gateway reads them with; a model download is a
tar stream.
"""

from __future__ import annotations

import asyncio
import io
import tarfile
import threading
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from sqlmodel import col, select

from services.trainer.app_state import TrainerState
from services.trainer.models import ModelVersion
from services.trainer.registry import get_model, model_view
from services.trainer.serving.views import deployment_view
from shared.contracts import PredictRequest
from shared.contracts.deployments import (
    MAX_LISTED_PROJECTS,
    ConfigureRequest,
    DeployAnswer,
    DeploymentRecord,
    DeployRequest,
    EndpointRecord,
    ModelRecord,
    PromoteRequest,
)
from shared.service_auth import require_caller
from shared.store import ArtifactStore

__all__ = ["router"]

#: Only the gateway calls these (service token, shared.service_auth).
router = APIRouter(prefix="/internal", tags=["internal"], dependencies=[require_caller("gateway")])


def _state(request: Request) -> TrainerState:
    return request.app.state.trainer  # type: ignore[no-any-return]


StateDep = Annotated[TrainerState, Depends(_state)]


@router.get("/projects/{project_id}/models", response_model=list[ModelRecord])
def list_models(project_id: uuid.UUID, state: StateDep) -> list[dict[str, Any]]:
    with state.runtime.db.session() as session:
        rows = session.exec(
            select(ModelVersion)
            .where(ModelVersion.project_id == project_id)
            .order_by(col(ModelVersion.version).desc())
        ).all()
        return [model_view(m) for m in rows]


@router.get("/models/{model_id}", response_model=ModelRecord)
def read_model(model_id: uuid.UUID, state: StateDep) -> dict[str, Any]:
    with state.runtime.db.session() as session:
        return model_view(get_model(session, model_id))


def _tar_stream(store: ArtifactStore, key: str, prefix: str) -> Iterator[bytes]:
    """A tar of a manifest's decrypted files, produced file by file (never all in memory)."""
    manifest = store.get_manifest(key)
    buffer = _Pipe()

    def produce() -> None:
        try:
            with tarfile.open(fileobj=buffer, mode="w|") as tar:
                for f in manifest.files:
                    info = tarfile.TarInfo(f"{prefix}/{f.path}")
                    info.size = f.size
                    tar.addfile(info, _ChunkReader(store.read(f.digest)))
        finally:
            buffer.finish()

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    yield from buffer.chunks()
    thread.join()


class _ChunkReader(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._rest = chunks, b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while len(self._rest) < size or size < 0:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._rest += chunk
        data, self._rest = (self._rest, b"") if size < 0 else (self._rest[:size], self._rest[size:])
        return data


class _Pipe(io.RawIOBase):
    """A bounded in-memory pipe between the tar writer thread and the response."""

    def __init__(self) -> None:
        import queue

        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=16)

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._queue.put(bytes(data))
        return len(data)

    def finish(self) -> None:
        self._queue.put(None)

    def chunks(self) -> Iterator[bytes]:
        while (item := self._queue.get()) is not None:
            yield item


@router.get("/models/{model_id}/download")
def download_model(model_id: uuid.UUID, state: StateDep) -> StreamingResponse:
    with state.runtime.db.session() as session:
        model = get_model(session, model_id)
    name = f"model-v{model.version}"
    return StreamingResponse(
        _tar_stream(state.jobs.store, model.manifest_key, name),
        media_type="application/x-tar",
        headers={"Content-Disposition": f'attachment; filename="{name}.tar"'},
    )


def _caller(request: Request) -> str | None:
    return request.headers.get("X-Aidp-User")


@router.post("/models/{model_id}/deploy", status_code=202, response_model=DeployAnswer)
async def deploy_model(
    model_id: uuid.UUID, state: StateDep, body: DeployRequest | None = None
) -> dict[str, Any]:
    body = body or DeployRequest()
    dep = await asyncio.to_thread(
        state.deployments.create,
        model_id=model_id,
        replicas=body.replicas,
        idle_timeout_s=body.idle_timeout_s,
        keep_previous=body.keep_previous,
        promote=body.promote,
    )
    state.deployments.start(dep.id)
    view = await asyncio.to_thread(state.deployments.view, dep.id)
    view["deployment_id"] = view["id"]
    return view


@router.get("/deployments", response_model=list[DeploymentRecord])
async def list_deployments(
    state: StateDep, project_id: Annotated[list[uuid.UUID], Query(max_length=MAX_LISTED_PROJECTS)]
) -> list[dict[str, Any]]:
    """The deployments of the given projects (the gateway passes the caller's)."""
    return await asyncio.to_thread(state.deployments.list_views, project_id)


@router.get("/deployments/{deployment_id}", response_model=DeploymentRecord)
async def read_deployment(deployment_id: uuid.UUID, state: StateDep) -> dict[str, Any]:
    return await asyncio.to_thread(state.deployments.view, deployment_id)


@router.patch("/deployments/{deployment_id}", response_model=DeploymentRecord)
async def configure_deployment(
    deployment_id: uuid.UUID, body: ConfigureRequest, state: StateDep
) -> dict[str, Any]:
    await state.deployments.configure(
        deployment_id,
        replicas=body.replicas,
        idle_timeout_s=body.idle_timeout_s or None,
        clear_idle_timeout=body.idle_timeout_s == 0,
        keep_previous=body.keep_previous,
    )
    return await asyncio.to_thread(state.deployments.view, deployment_id)


@router.delete("/deployments/{deployment_id}", response_model=DeploymentRecord)
async def delete_deployment(
    deployment_id: uuid.UUID, state: StateDep, request: Request
) -> dict[str, Any]:
    dep = await state.deployments.stop(
        deployment_id, reason="deleted", by=_caller(request), delete=True
    )
    return deployment_view(dep)


@router.post("/deployments/{deployment_id}/stop", response_model=DeploymentRecord)
async def stop_deployment(
    deployment_id: uuid.UUID, state: StateDep, request: Request
) -> dict[str, Any]:
    await state.deployments.stop(deployment_id, reason="stopped", by=_caller(request))
    return await asyncio.to_thread(state.deployments.view, deployment_id)


@router.post("/deployments/{deployment_id}/start", status_code=202, response_model=DeploymentRecord)
async def start_deployment(deployment_id: uuid.UUID, state: StateDep) -> dict[str, Any]:
    await state.deployments.resume(deployment_id)
    return await asyncio.to_thread(state.deployments.view, deployment_id)


@router.post(
    "/deployments/{deployment_id}/promote", status_code=202, response_model=DeploymentRecord
)
async def promote_deployment(
    deployment_id: uuid.UUID, state: StateDep, body: PromoteRequest | None = None
) -> dict[str, Any]:
    await state.deployments.promote(
        deployment_id, keep_previous=body.keep_previous if body else None
    )
    return await asyncio.to_thread(state.deployments.view, deployment_id)


@router.get("/projects/{project_id}/endpoint", response_model=EndpointRecord)
async def read_endpoint(project_id: uuid.UUID, state: StateDep) -> dict[str, Any]:
    return await asyncio.to_thread(state.deployments.endpoint_view, project_id)


@router.post(
    "/projects/{project_id}/endpoint/rollback", status_code=202, response_model=EndpointRecord
)
async def rollback_endpoint(project_id: uuid.UUID, state: StateDep) -> dict[str, Any]:
    await state.deployments.rollback(project_id)
    return await asyncio.to_thread(state.deployments.endpoint_view, project_id)


@router.post("/deployments/{deployment_id}/predict")
async def predict(deployment_id: uuid.UUID, body: PredictRequest, state: StateDep) -> JSONResponse:
    """The server's answer; ``X-Aidp-Replica`` (which replica answered) and
    ``X-Aidp-Cold-Start`` (the request waited for the servers to start) say how."""
    result, sent = await state.deployments.predict_forwarded(deployment_id, body.model_dump())
    return JSONResponse(result, headers=sent.headers())
