"""Error answers of the gateway: documented statuses and the spec-changed conflict.

``responses()`` feeds ``responses=`` of each route so the OpenAPI document lists every
status the route can answer, with the one error shape of docs/design.md §5. The handlers
(validation errors naming the field, routing errors, the web UI fallback) are the one
installer's: :func:`shared.service.http_errors.install_error_handlers`.
"""

from __future__ import annotations

from typing import Any

from services.gateway.schemas import ErrorOut, SpecChangedOut
from shared.errors import Conflict

__all__ = ["SPEC_CHANGED_RESPONSE", "SpecChanged", "responses"]

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
    message (the one installer's AidpError handler puts an error's ``details`` there)."""

    code = "spec_changed"

    def __init__(self, message: str, *, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.details = details
