"""HTTP error shape for the auth app: validation and routing errors as
``{"error": {"code", "message"}}`` (the AidpError handler comes from shared.runtime)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["ERROR_RESPONSES", "install_validation_handlers", "validation_message"]

_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
}


def _response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_SCHEMA}}}


#: For ``responses=`` on routes, so OpenAPI lists every status a route can answer.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _response("Not authenticated"),
    403: _response("Not allowed"),
    404: _response("Not found"),
    409: _response("Conflict"),
    422: _response("Invalid input; the message names the field"),
    429: _response("Rate limited; see Retry-After"),
}


def validation_message(errors: list[Any]) -> str:
    """``field.path: problem; ...`` with the request part (body/query) left out."""
    parts = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(loc) or "body"
        parts.append(f"{field}: {str(error.get('msg', 'invalid')).lower()}")
    return "; ".join(parts) or "invalid input"


def install_validation_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        message = validation_message(list(exc.errors()))
        return JSONResponse({"error": {"code": "invalid", "message": message}}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        return JSONResponse(
            {"error": {"code": code, "message": str(exc.detail)}},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
