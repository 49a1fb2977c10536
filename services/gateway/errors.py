"""Error answers of the gateway: validation errors naming the field, documented statuses.

``RESPONSES`` feeds ``responses=`` of each route so the OpenAPI document lists every
status the route can answer, with the one error shape of docs/design.md §5.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.gateway.schemas import ErrorOut, SpecChangedOut
from shared.errors import Conflict

__all__ = [
    "SpecChanged",
    "install_http_error_handler",
    "install_spec_changed_handler",
    "install_validation_handler",
    "responses",
]

log = logging.getLogger(__name__)

_DESCRIPTIONS = {
    401: "Missing, invalid or expired token",
    403: "Your role on the project does not allow this",
    404: "Not found (or not yours)",
    409: "Conflicts with the current state",
    413: "The upload is too large",
    422: "Invalid input; the message names the field",
    429: "Rate limited; see Retry-After",
    502: "Another service refused the request",
    503: "A service this route needs is unavailable",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given error statuses (401 and 422 always included)."""
    wanted = sorted({401, 422, *statuses})
    return {s: {"model": ErrorOut, "description": _DESCRIPTIONS[s]} for s in wanted}


#: the 409 of a run start whose stored spec someone else changed (``SpecChangedOut``)
SPEC_CHANGED_RESPONSE: dict[int | str, dict[str, Any]] = {
    409: {
        "model": SpecChangedOut,
        "description": "A run is still active (code `conflict`), or the spec was changed by "
        "someone else since you wrote or approved it (code `spec_changed`, with the diff): "
        "start again with `confirm_spec_hash`",
    }
}


class SpecChanged(Conflict):
    """409: the stored spec was changed by someone else since the requester wrote or
    approved it; ``details`` (hash, who, diff) go into the error body next to code and
    message."""

    code = "spec_changed"

    def __init__(self, message: str, *, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.details = details


def install_spec_changed_handler(app: FastAPI) -> None:
    """Answer :class:`SpecChanged` as ``{"error": {"code", "message", "spec_hash", …}}``."""

    @app.exception_handler(SpecChanged)
    async def _spec_changed(_request: Request, exc: SpecChanged) -> JSONResponse:
        body = {"code": exc.code, "message": exc.message, **exc.details}
        return JSONResponse({"error": body}, status_code=exc.status)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def _message(exc: RequestValidationError) -> str:
    messages = []
    for error in exc.errors()[:5]:
        msg = str(error.get("msg", "invalid"))
        if error.get("type") == "extra_forbidden":
            msg = "unknown field"
        messages.append(f"{_field(tuple(error.get('loc', ())))}: {msg}")
    return "; ".join(messages) or "invalid request"


def install_validation_handler(app: FastAPI) -> None:
    """Answer request validation errors as ``{"error": {"code": "invalid", ...}}``."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            {"error": {"code": "invalid", "message": _message(exc)}}, status_code=422
        )


def install_http_error_handler(app: FastAPI, *, fallback: Any = None) -> None:
    """Answer routing errors (404, 405) in the docs/design.md §5 shape; unknown GET paths go to
    ``fallback(method, path)`` first (the web UI), which returns a response or None."""

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404 and fallback is not None:
            answer = fallback(request.method, request.url.path)
            if answer is not None:
                return answer  # type: ignore[no-any-return]
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        return JSONResponse(
            {"error": {"code": code, "message": str(exc.detail)}},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error: %r", exc)
        return JSONResponse(
            {"error": {"code": "internal", "message": "internal error"}}, status_code=500
        )
