"""The one HTTP error installer of every aidp service (issue 17, docs/design.md §5).

Every answer that is not a success has the one shape ``{"error": {"code", "message", ...}}``:

- :class:`~shared.errors.AidpError`: its ``code``, ``message`` and status
  (:func:`~shared.errors.http_status_for`), ``Retry-After`` on 429 and 503; an error that
  carries ``details`` (a mapping, safe to show, e.g. the gateway's ``SpecChanged``) has them
  next to code and message;
- a database error: 503 ``database_unavailable`` with ``Retry-After`` when the database is
  down, else 500 ``internal`` (logged, never shown);
- request validation: 422 ``invalid``, the message names each field and the problem, never
  the value sent (a password or a key must not come back in an error, or land in a log);
- routing (404, 405, …): ``not_found``, ``method_not_allowed``, else ``error``; an unknown
  path may first go to a ``fallback`` (the gateway's web UI);
- anything else: 500 ``internal`` (logged with its stack), never the exception's text.

Services differ only in how they word validation messages (:class:`ValidationStyle`): the
auth service's lower-cased pydantic messages are relayed verbatim by the gateway's auth
proxy and are part of what its clients see.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import (
    AidpError,
    DependencyDown,
    RateLimited,
    TransientError,
    dependency_outage,
    http_status_for,
)

__all__ = [
    "DEFAULT_VALIDATION",
    "NotFoundFallback",
    "ValidationStyle",
    "error_response",
    "install_error_handlers",
    "validation_message",
]

log = logging.getLogger(__name__)

#: ``(method, path)`` of a request no route matched → an answer (e.g. a web UI page) or None
NotFoundFallback = Callable[[str, str], Response | None]

#: where in the request a value was: left out of the field name a message shows
_REQUEST_PARTS = frozenset({"body", "query", "path", "header", "cookie"})
_ROUTING_CODES = {404: "not_found", 405: "method_not_allowed"}


@dataclass(frozen=True)
class ValidationStyle:
    """How a service words a request validation error (``field: problem; …``)."""

    #: at most this many errors named (None: all)
    max_errors: int | None = 5
    #: pydantic's message lower-cased ("field required" rather than "Field required")
    lowercase: bool = False
    #: the message of an unknown field (``extra_forbidden``); None: pydantic's own
    unknown_field: str | None = "unknown field"


#: the wording of every service but auth (see :data:`services.auth.errors.VALIDATION`)
DEFAULT_VALIDATION = ValidationStyle()


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in _REQUEST_PARTS:
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_message(errors: list[Any], style: ValidationStyle = DEFAULT_VALIDATION) -> str:
    """``field.path: problem; …`` for pydantic's ``errors()``; never the value sent."""
    messages = []
    for error in errors[: style.max_errors]:
        msg = str(error.get("msg", "invalid"))
        if style.lowercase:
            msg = msg.lower()
        if error.get("type") == "extra_forbidden" and style.unknown_field is not None:
            msg = style.unknown_field
        messages.append(f"{_field(tuple(error.get('loc', ())))}: {msg}")
    return "; ".join(messages) or "invalid request"


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The one error shape: ``{"error": {"code", "message", **details}}``."""
    body = {"code": code, "message": message, **(details or {})}
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _aidp_error_response(exc: AidpError) -> JSONResponse:
    headers = None
    if isinstance(exc, RateLimited | DependencyDown):
        headers = {"Retry-After": str(exc.retry_after)}
    elif isinstance(exc, TransientError):
        headers = {"Retry-After": str(DependencyDown.retry_after)}
    details = getattr(exc, "details", None)
    return error_response(
        http_status_for(exc),
        exc.code,
        exc.message,
        details=details if isinstance(details, Mapping) else None,
        headers=headers,
    )


def install_error_handlers(
    app: FastAPI,
    *,
    validation: ValidationStyle = DEFAULT_VALIDATION,
    fallback: NotFoundFallback | None = None,
) -> None:
    """Install every error handler of a service app, once (see the module docstring)."""

    @app.exception_handler(AidpError)
    async def _aidp_error(_request: Request, exc: AidpError) -> JSONResponse:
        return _aidp_error_response(exc)

    @app.exception_handler(SQLAlchemyError)
    @app.exception_handler(psycopg.Error)
    async def _database_error(request: Request, exc: Exception) -> JSONResponse:
        """The database down (restarted, unreachable, out of connections): 503 with
        Retry-After, never a 500; any other database error stays an internal error."""
        if dependency_outage(exc) is None:
            log.error("database error on %s %s: %r", request.method, request.url.path, exc)
            return error_response(500, "internal", "internal error")
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        return _aidp_error_response(
            DependencyDown("database", "The database is unavailable; try again shortly.")
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid", validation_message(list(exc.errors()), validation))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404 and fallback is not None:
            answer = fallback(request.method, request.url.path)
            if answer is not None:
                return answer
        return error_response(
            exc.status_code,
            _ROUTING_CODES.get(exc.status_code, "error"),
            str(exc.detail),
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s: %r", request.method, request.url.path, exc)
        return error_response(500, "internal", "internal error")
