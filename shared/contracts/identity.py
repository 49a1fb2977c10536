"""Auth's internal API for the gateway (``services/auth/internal.py``), declared once.

- ``POST /internal/introspect`` :class:`IntrospectIn` → :class:`IntrospectOut`
  (401 for an inactive token);
- ``GET /internal/users/{id}/sessions`` → :class:`SessionsOut`;
- ``GET /internal/users/lookup?email=`` → :class:`UserRef` (404 when nobody has it).

Auth declares its routes with these models; the gateway reads the answers through the typed
calls below, so a renamed field fails on both sides at once. An answer that does not fit
is the callee's fault, never the caller's: it raises ``TransientError``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from shared.errors import NotFound, TransientError

__all__ = [
    "IntrospectOut",
    "IntrospectIn",
    "JsonCaller",
    "SessionsOut",
    "UserRef",
    "UtcDatetime",
    "lookup_user",
    "parse_answer",
    "user_sessions",
]

#: the longest token auth looks at; a longer one is inactive
MAX_TOKEN_LENGTH = 4096


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC, so say so on the wire
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


#: a datetime said in UTC on the wire (a naive one read back from SQLite is UTC)
UtcDatetime = Annotated[datetime, AfterValidator(_utc)]


class IntrospectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Any string up to the limit: a malformed token is an inactive one (401), not a 422.
    token: str = Field(max_length=MAX_TOKEN_LENGTH)


class IntrospectOut(BaseModel):
    user_id: str
    email: str
    is_admin: bool
    kind: Literal["access", "api"]
    scopes: list[str] = Field(description="What the token may do (shared.scopes).")
    not_before: UtcDatetime | None = Field(
        None, description="The user's sessions_not_before (access tokens older are revoked)."
    )


class SessionsOut(BaseModel):
    not_before: UtcDatetime | None = Field(
        description="Access tokens of the user issued (iat) before this are revoked."
    )


class UserRef(BaseModel):
    id: str
    email: str


class JsonCaller(Protocol):
    """What the typed calls need of a client: one JSON request, error answers raised as
    the taxonomy's errors (the gateway's ``Downstream``)."""

    async def json(self, method: str, path: str, **kwargs: Any) -> Any: ...


Answer = TypeVar("Answer", bound=BaseModel)


def parse_answer(model: type[Answer], body: Any, *, what: str) -> Answer:
    """``body`` as ``model``; a body that does not fit raises ``TransientError``."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise TransientError(f"auth answered an unexpected {what} body") from exc


async def user_sessions(auth: JsonCaller, user_id: uuid.UUID) -> SessionsOut:
    body = await auth.json("GET", f"/internal/users/{user_id}/sessions")
    return parse_answer(SessionsOut, body, what="sessions")


async def lookup_user(auth: JsonCaller, email: str) -> UserRef | None:
    """The account registered under ``email``; None when there is none."""
    try:
        body = await auth.json("GET", "/internal/users/lookup", params={"email": email})
    except NotFound:
        return None
    return parse_answer(UserRef, body, what="user lookup")
