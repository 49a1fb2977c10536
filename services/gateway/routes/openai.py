"""The OpenAI-compatible API of an LLM deployment (tasks ``causal-lm`` and ``chat``).

``base_url = <origin>/api/deployments/{id}/v1`` and ``api_key = <a platform token>`` (an
access JWT or an API token with the ``predict`` scope) make the official ``openai``
clients work: ``GET /models``, ``POST /chat/completions``, ``POST /completions``, with
``stream: true`` answered as server-sent events passed through chunk by chunk.

Authorisation is the deployment's: the caller needs the editor role on its project, as for
``/predict``; another user gets 404. Which project a deployment belongs to is asked of the
trainer once (``routes/serving.authorize_deployment``, the trainer's answer read through
``shared/contracts/deployments.py``) and remembered (it never changes); the
role is read on every request, on the event loop (``shared.db.aio``). Every error
answer has the OpenAI shape ``{"error": {"message", "type", "param", "code"}}``, so
clients raise their usual exceptions (``openai.NotFoundError``, ``BadRequestError`` …).
The body is checked for JSON here and forwarded as is; the engine on the node checks the
arguments (``services/trainer/model_server/openai_wire.py``).
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from services.gateway.deps import GatewayDep, role_rank, route_template
from services.gateway.identity import Identity
from services.gateway.routes.serving import authorize_deployment
from services.gateway.schemas import ErrorOut
from services.gateway.scopes import required_scope
from shared.errors import AidpError, Forbidden, NotFound, Unauthenticated

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(tags=["openai"])

DeploymentId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,128}$")]
PREFIX = "/api/deployments/{deployment_id}/v1"
#: a generation may take minutes before its first byte (non-streamed) or between tokens
_TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=60.0, pool=10.0)
_CACHE_MAX = 100_000  # deployments whose project is remembered (then forgotten at once)
#: the caller's role on a project (NULL: none; no row: no such project)
_ROLE = """
SELECT m.role AS role
FROM gateway_projects p
LEFT JOIN gateway_members m ON m.project_id = p.id AND m.user_id = :user
WHERE p.id = :project
"""

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}

_RESPONSES: dict[int | str, dict[str, Any]] = {
    s: {"description": d}
    for s, d in {
        400: "Invalid arguments (OpenAI error shape)",
        401: "Missing, invalid or expired token",
        403: "Your role on the project does not allow this",
        404: "No such deployment (or not yours), or an unknown model",
        409: "The deployment is not running",
        503: "A service this route needs is unavailable",
    }.items()
}
#: a malformed deployment id in the path is refused before the route, in the platform's shape
_RESPONSES[422] = {"model": ErrorOut, "description": "Malformed deployment id in the path"}


def _error(status: int, message: str, code: str | None = None) -> JSONResponse:
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": code or kind}},
        status_code=400 if status == 422 else status,
    )


def _from_platform(exc: AidpError) -> JSONResponse:
    return _error(exc.status, exc.message, exc.code)


async def _caller(request: Request, gateway: GatewayDep) -> Identity:
    """The bearer token's user, checked for the route's scope (as ``CurrentUser``)."""
    scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer token (the api_key is a platform token)")
    identity = await gateway.verifier.verify(token.strip())
    needed = required_scope(request.method, route_template(request))
    if needed not in identity.scopes:
        from services.gateway.scopes import InsufficientScope

        raise InsufficientScope(needed)
    return identity


async def _openai_caller(request: Request, gateway: GatewayDep) -> Identity | AidpError:
    """The caller, or why not (answered in the OpenAI shape by the route, not the app's
    handler); the scope test knows this dependency as the bearer-token one."""
    try:
        return await _caller(request, gateway)
    except AidpError as exc:
        return exc


Caller = Annotated[Identity | AidpError, Depends(_openai_caller)]


def _project_cache(request: Request) -> dict[uuid.UUID, uuid.UUID]:
    """Deployment id → project id, learned from the trainer (a deployment never changes
    project, so this is never stale; a deleted one is refused by the trainer)."""
    cache: dict[uuid.UUID, uuid.UUID] | None = getattr(request.app.state, "openai_projects", None)
    if cache is None or len(cache) > _CACHE_MAX:
        cache = request.app.state.openai_projects = {}
    return cache


async def _deployment(
    request: Request, gateway: GatewayDep, caller: Identity | AidpError, deployment_id: str
) -> Identity:
    """The caller, authorised (editor, as ``/predict``) on the deployment's project: the
    role is checked on every request; which project it is, asked of the trainer once."""
    if isinstance(caller, AidpError):
        raise caller
    user = caller
    try:  # every deployment id is a UUID: anything else names no deployment
        dep_id = uuid.UUID(deployment_id)
    except ValueError:
        raise NotFound("deployment not found") from None
    cache = _project_cache(request)
    project_id = cache.get(dep_id)
    if project_id is None:
        record, _ = await authorize_deployment(
            gateway, user=user, deployment_id=deployment_id, need="editor"
        )
        cache[dep_id] = record.project_id
        return user
    # deps.authorize's rule, read on the event loop (no thread hop on the hot path)
    row = await gateway.db.aio.fetch_one(_ROLE, {"user": user.user_id, "project": project_id})
    role = row["role"] if row is not None else None
    if row is not None and role is None and user.is_admin:
        role = "viewer"
    if role is None:
        raise NotFound("deployment not found")
    if role_rank(role) < role_rank("editor"):
        raise Forbidden(f"your role on this project is {role}; this needs editor")
    return user


async def _relay(
    gateway: GatewayDep, user: Identity, deployment_id: str, method: str, path: str, body: bytes
) -> Response:
    """Forward to the trainer; a stream goes on chunk by chunk, errors get the OpenAI shape."""
    kwargs: dict[str, Any] = {}
    if method == "POST":
        kwargs = {"content": body, "headers": {"Content-Type": "application/json"}}
    upstream = await gateway.downstream.trainer.open_stream(
        method,
        f"/internal/deployments/{deployment_id}/v1/{path}",
        user_id=user.user_id,
        passthrough=True,
        live=True,
        timeout=_TIMEOUT,
        **kwargs,
    )
    content_type = upstream.headers.get("content-type", "application/json")
    passed = {k: v for k, v in upstream.headers.items() if k.lower().startswith("x-aidp-")}
    if upstream.status_code < 400 and content_type.startswith("text/event-stream"):
        return StreamingResponse(
            upstream.aiter_raw(),
            status_code=upstream.status_code,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **passed},
            background=BackgroundTask(upstream.aclose),
        )
    try:
        data = await upstream.aread()
    finally:
        await upstream.aclose()
    if upstream.status_code < 400:
        return Response(data, status_code=upstream.status_code, media_type=content_type,
                        headers=passed)  # fmt: skip
    return _upstream_error(upstream.status_code, data)


def _upstream_error(status: int, data: bytes) -> JSONResponse:
    """An engine's OpenAI error as it is; a platform error (``{"error": {code, message}}``)
    in the OpenAI shape; anything else a generic one."""
    try:
        body = json.loads(data)
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        if "type" in error:
            return JSONResponse({"error": error}, status_code=status)
        code = error.get("code") if isinstance(error.get("code"), str) else None
        return _error(status, error["message"], code)
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return _error(status, body["detail"])
    if status >= 500:
        log.warning("openai relay: upstream answered %s", status)
        return _error(502, "the inference server failed", "upstream_error")
    return _error(status, f"the deployment answered {status}")


async def _guarded(
    request: Request,
    gateway: GatewayDep,
    caller: Identity | AidpError,
    deployment_id: str,
    path: str,
) -> Response:
    try:
        user = await _deployment(request, gateway, caller, deployment_id)
        body = b""
        if request.method == "POST":
            body = await request.body()
            try:
                parsed = json.loads(body)
            except ValueError as exc:
                return _error(400, f"the request body is not valid JSON: {exc}", "invalid_json")
            if not isinstance(parsed, dict):
                return _error(400, "the request body must be a JSON object", "invalid_type")
        return await _relay(gateway, user, deployment_id, request.method, path, body)
    except AidpError as exc:
        return _from_platform(exc)


@router.get(PREFIX + "/models", responses=_RESPONSES)
async def openai_models(
    deployment_id: DeploymentId, request: Request, gateway: GatewayDep, caller: Caller
) -> Response:
    """The model this deployment serves (OpenAI ``GET /v1/models``)."""
    return await _guarded(request, gateway, caller, deployment_id, "models")


@router.post(PREFIX + "/chat/completions", responses=_RESPONSES)
async def openai_chat_completions(
    deployment_id: DeploymentId, request: Request, gateway: GatewayDep, caller: Caller
) -> Response:
    """OpenAI chat completions: ``messages`` through the model's chat template; ``stream``,
    ``max_tokens``, ``temperature``, ``top_p``, ``stop``, ``seed``; ``usage`` counts."""
    return await _guarded(request, gateway, caller, deployment_id, "chat/completions")


@router.post(PREFIX + "/completions", responses=_RESPONSES)
async def openai_completions(
    deployment_id: DeploymentId, request: Request, gateway: GatewayDep, caller: Caller
) -> Response:
    """OpenAI (legacy) completions of a ``prompt``; the same arguments as chat."""
    return await _guarded(request, gateway, caller, deployment_id, "completions")
