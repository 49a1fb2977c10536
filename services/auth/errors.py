"""HTTP errors of the auth app: the error responses its routes document, and how it words
validation errors. The handlers are the one installer's
(:func:`shared.service.http_errors.install_error_handlers`, with :data:`VALIDATION`)."""

from __future__ import annotations

from typing import Any

from shared.service.http_errors import ValidationStyle
from shared.service.http_errors import validation_message as shared_validation_message

__all__ = ["ERROR_RESPONSES", "VALIDATION", "validation_message"]

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


#: How auth words request validation errors: every error, pydantic's message lower-cased
#: ("password: field required", "admin: extra inputs are not permitted"). The gateway's auth
#: proxy relays these answers verbatim, so this wording is what the web UI and CLI show.
VALIDATION = ValidationStyle(max_errors=None, lowercase=True, unknown_field=None)


def validation_message(errors: list[Any]) -> str:
    """``field.path: problem; ...`` with the request part (body/query) left out."""
    return shared_validation_message(errors, VALIDATION)
