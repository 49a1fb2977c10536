"""Request dependencies as ``Annotated`` aliases: the context, the caller, its address."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Request

from services.auth.context import AuthContext
from services.auth.schemas import TOKEN_PATTERN
from services.auth.service import Principal, authenticate
from shared.errors import Forbidden, Unauthenticated

__all__ = ["Admin", "ClientAddress", "Ctx", "CurrentUser", "SessionUser", "bearer_token"]

_TOKEN = re.compile(TOKEN_PATTERN)


def _context(request: Request) -> AuthContext:
    ctx: AuthContext | None = getattr(request.app.state, "auth", None)
    if ctx is None:
        raise RuntimeError("auth context not built: the app's lifespan has not run")
    return ctx


Ctx = Annotated[AuthContext, Depends(_context)]


def bearer_token(request: Request) -> str:
    """The token of ``Authorization: Bearer <token>``; 401 when absent or malformed."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("missing bearer token")
    if len(token) > 4096 or not _TOKEN.match(token):
        raise Unauthenticated("malformed bearer token")
    return token


def _current_user(ctx: Ctx, token: Annotated[str, Depends(bearer_token)]) -> Principal:
    return authenticate(ctx, token=token)


CurrentUser = Annotated[Principal, Depends(_current_user)]


def _session_user(user: CurrentUser) -> Principal:
    if user.kind != "access":
        raise Forbidden("this action needs a login session, not an API token")
    return user


#: An access token (interactive login) is required; API tokens are refused.
SessionUser = Annotated[Principal, Depends(_session_user)]


def _admin(user: SessionUser) -> Principal:
    if not user.is_admin:
        raise Forbidden("platform admins only")
    return user


Admin = Annotated[Principal, Depends(_admin)]


def _client_address(request: Request, ctx: Ctx) -> str:
    """The last ``X-Forwarded-For`` entry (appended by the gateway), else the peer address."""
    forwarded = request.headers.get("x-forwarded-for", "")
    if ctx.settings.trust_forwarded_for and forwarded.strip():
        return forwarded.split(",")[-1].strip() or "unknown"
    return request.client.host if request.client else "unknown"


ClientAddress = Annotated[str, Depends(_client_address)]
