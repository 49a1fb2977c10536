"""The OpenAI-compatible API of LLM deployments, forwarded to their inference servers.

``GET /internal/deployments/{id}/v1/models``, ``POST .../v1/chat/completions`` and
``POST .../v1/completions``: the gateway authorises the caller, this forwards the body as
it is to a replica of the deployment (waking an idle one, as ``/predict`` does) and relays
the answer — a server-sent event stream chunk by chunk — with the server's status. The
engine on the node checks the arguments and answers errors in the OpenAI shape; errors
of the platform (not running, unreachable) keep the platform's shape and the gateway
converts them.
"""

from __future__ import annotations

import uuid
from typing import Literal

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask

from services.trainer.api import StateDep
from shared.errors import ProviderError
from shared.service_auth import require_caller

__all__ = ["router"]

router = APIRouter(prefix="/internal", tags=["internal"], dependencies=[require_caller("gateway")])

#: generation may run for minutes; a stream waits this long for its next token at most
GENERATION_TIMEOUT = 600.0


async def _forward(
    state: StateDep, deployment_id: uuid.UUID, method: str, path: str, body: bytes | None
) -> Response:
    try:
        sent = await state.deployments.forward(
            deployment_id,
            method,
            path,
            content=body,
            stream=True,
            timeout=GENERATION_TIMEOUT,
        )
    except httpx.HTTPError as exc:
        raise ProviderError(f"inference server unreachable: {exc}", retryable=True) from exc
    upstream = sent.response
    content_type = upstream.headers.get("content-type", "application/json")
    if content_type.startswith("text/event-stream"):
        return StreamingResponse(
            upstream.aiter_raw(),
            status_code=upstream.status_code,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", **sent.headers()},
            background=BackgroundTask(upstream.aclose),
        )
    try:
        data = await upstream.aread()
    except httpx.HTTPError as exc:
        raise ProviderError(f"inference server failed: {exc}", retryable=True) from exc
    finally:
        await upstream.aclose()
    return Response(
        data, status_code=upstream.status_code, media_type=content_type, headers=sent.headers()
    )


@router.get("/deployments/{deployment_id}/v1/models")
async def openai_models(deployment_id: uuid.UUID, state: StateDep) -> Response:
    return await _forward(state, deployment_id, "GET", "/v1/models", None)


@router.post("/deployments/{deployment_id}/v1/{endpoint:path}")
async def openai_generate(
    deployment_id: uuid.UUID,
    endpoint: Literal["chat/completions", "completions"],
    request: Request,
    state: StateDep,
) -> Response:
    return await _forward(state, deployment_id, "POST", f"/v1/{endpoint}", await request.body())
