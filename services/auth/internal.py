"""Internal API for the gateway (trusted network only; never exposed publicly). The shapes
of the first three are ``shared/contracts/identity.py``, which the gateway reads them with.

- ``POST /internal/introspect {"token"}`` →
  ``{"user_id","email","is_admin","kind","scopes","not_before"}`` or 401 (also for any
  malformed token: it is inactive, never a 422/5xx)
- ``GET /internal/users/{id}/sessions`` → ``{"not_before"}`` (ISO time or null): the
  oldest ``iat`` an access token of the user may carry, for a gateway that missed a
  ``SessionsRevoked``
- ``GET /internal/users/lookup?email=`` → ``{"id","email"}`` or 404
- ``GET /internal/users/{id}`` → ``{"id","email","is_admin","created_at"}`` or 404
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query

from services.auth import service
from services.auth.deps import Ctx
from services.auth.errors import ERROR_RESPONSES
from services.auth.schemas import UserOut, normalise_email
from shared.contracts.identity import IntrospectIn, IntrospectOut, SessionsOut, UserRef
from shared.errors import NotFound
from shared.service_auth import require_caller

__all__ = ["router"]

#: Only the gateway calls these (service token, shared.service_auth).
router = APIRouter(prefix="/internal", tags=["internal"], dependencies=[require_caller("gateway")])


def _errors(*codes: int) -> dict[int | str, dict[str, object]]:
    return {code: ERROR_RESPONSES[code] for code in codes}


@router.post("/introspect", response_model=IntrospectOut, responses=_errors(401, 422))
def introspect(body: IntrospectIn, ctx: Ctx) -> IntrospectOut:
    p = service.authenticate(ctx, token=body.token)
    return IntrospectOut(
        user_id=p.user_id,
        email=p.email,
        is_admin=p.is_admin,
        kind=p.kind,
        scopes=list(p.scopes),
        not_before=p.not_before,
    )


@router.get("/users/lookup", response_model=UserRef, responses=_errors(404, 422))
def lookup(ctx: Ctx, email: str = Query(..., max_length=254)) -> UserRef:
    try:
        normalised = normalise_email(email)
    except ValueError as exc:
        raise NotFound("no such user") from exc
    user = service.lookup_user(ctx, email=normalised)
    return UserRef(id=user.id, email=user.email)


@router.get("/users/{user_id}/sessions", response_model=SessionsOut, responses=_errors(404, 422))
def user_sessions(user_id: uuid.UUID, ctx: Ctx) -> SessionsOut:
    return SessionsOut(not_before=service.session_state(ctx, user_id=str(user_id)))


@router.get("/users/{user_id}", response_model=UserOut, responses=_errors(404, 422))
def get_user(user_id: uuid.UUID, ctx: Ctx) -> UserOut:
    user = service.get_user(ctx, user_id=str(user_id))
    return UserOut.model_validate(user, from_attributes=True)
