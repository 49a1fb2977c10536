"""Both ends on the wire: the caller's httpx auth and the callee's FastAPI dependency."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

import httpx
from fastapi import Depends, Request

from shared.errors import Forbidden, Unauthenticated
from shared.service_auth.credentials import ServiceAuth, ServiceCredentials

__all__ = ["INTERNAL_PREFIX", "ServiceTokenAuth", "require_caller"]

#: Only requests under this path carry the service token (never a proxied public route,
#: whose ``Authorization`` header is the end user's).
INTERNAL_PREFIX = "/internal/"


class ServiceTokenAuth(httpx.Auth):
    """Sends ``Authorization: Bearer <service token>`` for ``audience`` on internal routes.

    ``credentials`` is a callable so a client can be built before its service has started
    (the credentials come from the running service's :class:`ServiceAuth`)."""

    def __init__(self, credentials: Callable[[], ServiceCredentials], audience: str) -> None:
        self._credentials = credentials
        self.audience = audience

    def _wanted(self, request: httpx.Request) -> bool:
        return request.url.path.startswith(INTERNAL_PREFIX)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, Any, None]:
        if self._wanted(request):
            token = self._credentials().token_for(self.audience)
            request.headers["Authorization"] = f"Bearer {token}"
        yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, Any]:
        if self._wanted(request):
            credentials = self._credentials()
            token = credentials.cached(self.audience)
            if token is None:  # minting may ask Vault to sign: off the event loop
                token = await asyncio.to_thread(credentials.token_for, self.audience)
            request.headers["Authorization"] = f"Bearer {token}"
        yield request


def _service_auth(request: Request) -> ServiceAuth:
    auth: ServiceAuth = request.app.state.runtime.service_auth
    return auth


def require_caller(*allowed: str) -> Any:
    """A router/route dependency: the request carries a valid service token for this
    service (401 otherwise) from one of the ``allowed`` services (403 otherwise)."""
    allowed_set = frozenset(allowed)

    def check(request: Request) -> str:  # sync: FastAPI runs it in a worker thread
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("this internal route needs a service credential")
        claims = _service_auth(request).verifier.verify(token.strip())
        if claims.caller not in allowed_set:
            raise Forbidden(f"service {claims.caller!r} may not call this route")
        return claims.caller

    check.allowed_callers = allowed_set  # type: ignore[attr-defined]  # for route audits
    return Depends(check)
