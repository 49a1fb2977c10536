"""``/api/auth/*``: the auth service's public routes, forwarded with bodies streamed both ways.

Only an allow-list of public routes (method and path) is forwarded: register, login,
refresh, logout, logout-all, me, password, tokens, tokens/{id}, jwks, keys/rotate, the
admin actions (invitations, keys/{kid}/revoke, users/{id}/revoke-sessions|disable|enable)
and single sign-on (oidc/config, oidc/login, oidc/callback, oidc/token).
Anything else answers 404 here, with or without a token, and never reaches the auth service: its
``/internal/*`` API and its own ``openapi.json`` are not reachable through the gateway.
The path must arrive literally (no percent-encoding, dot segments or backslashes: the
request's raw path is compared with the decoded one), so no encoded form of ``../`` can
name another route upstream.

``X-Forwarded-Host`` carries the Host this gateway was asked for (auth builds the SSO
callback URL from it unless ``AIDP_OIDC_REDIRECT_URL`` is set).

``X-Forwarded-For`` is set to the caller's address as this gateway sees it (uvicorn
resolves trusted proxies first, see ``forwarded_allow_ips``), never taken from the
client, so the auth service's per-address login limit cannot be dodged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from services.gateway.deps import GatewayDep
from shared.errors import NotFound

__all__ = ["PUBLIC_ROUTES", "public_route", "router"]

#: The auth service's public routes (path below /api/auth/ → methods); nothing else passes.
PUBLIC_ROUTES: dict[str, frozenset[str]] = {
    "register": frozenset({"POST"}),
    "login": frozenset({"POST"}),
    "refresh": frozenset({"POST"}),
    "logout": frozenset({"POST"}),
    "me": frozenset({"GET"}),
    "password": frozenset({"POST"}),
    "tokens": frozenset({"GET", "POST"}),
    "tokens/{id}": frozenset({"DELETE"}),
    "jwks": frozenset({"GET"}),
    "keys/rotate": frozenset({"POST"}),
    "logout-all": frozenset({"POST"}),
    "admin/invitations": frozenset({"POST"}),
    "admin/keys/{kid}/revoke": frozenset({"POST"}),
    "admin/users/{user_id}/revoke-sessions": frozenset({"POST"}),
    "admin/users/{user_id}/disable": frozenset({"POST"}),
    "admin/users/{user_id}/enable": frozenset({"POST"}),
    "oidc/config": frozenset({"GET"}),
    "oidc/login": frozenset({"GET"}),
    "oidc/callback": frozenset({"GET"}),
    "oidc/token": frozenset({"POST"}),
}
_TOKEN_ID = re.compile(r"^tokens/[0-9A-Fa-f-]{32,36}$")
_KEY_REVOKE = re.compile(r"^admin/keys/[0-9]{14}-[0-9a-f]{8}/revoke$")
_USER_ACTION = re.compile(r"^admin/users/[0-9A-Fa-f-]{32,36}/(revoke-sessions|disable|enable)$")
_PREFIX = "/api/auth/"

router = APIRouter(tags=["auth"])

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-aidp-user",
    }
)


@router.api_route(
    "/api/auth/{path:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
)
async def auth_proxy(path: str, request: Request, gateway: GatewayDep) -> StreamingResponse:
    if not public_route(request.method, path, request.scope):
        raise NotFound("not found")
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
    headers["X-Forwarded-For"] = request.client.host if request.client else "unknown"
    # auth marks its cookies Secure when the caller's connection is HTTPS
    headers["X-Forwarded-Proto"] = request.url.scheme
    if host := request.headers.get("host"):  # the SSO callback URL is built from it
        headers["X-Forwarded-Host"] = host
    has_body = request.method in ("POST", "PUT", "PATCH", "DELETE")
    upstream = await gateway.downstream.auth.open_stream(
        request.method,
        f"/api/auth/{path}",
        params=request.query_params.multi_items(),
        headers=headers,
        content=request.stream() if has_body else None,
        passthrough=True,
    )
    response = StreamingResponse(
        upstream.aiter_raw(),
        status_code=upstream.status_code,
        background=BackgroundTask(upstream.aclose),
    )
    response.raw_headers = [  # multi_items keeps repeated headers such as Set-Cookie
        (k.lower().encode("latin-1"), v.encode("latin-1"))
        for k, v in upstream.headers.multi_items()
        if k.lower() not in _HOP_BY_HOP
    ]
    return response


def public_route(method: str, path: str, scope: Mapping[str, Any]) -> bool:
    """True when ``method`` on ``/api/auth/<path>`` is a public auth route, sent literally.

    ``path`` is the decoded remainder; the request's raw path (when the server gives one)
    must end with exactly the same text, so any percent-encoded character refuses it.
    """
    key = path
    if _TOKEN_ID.fullmatch(path):
        key = "tokens/{id}"
    elif _KEY_REVOKE.fullmatch(path):
        key = "admin/keys/{kid}/revoke"
    elif match := _USER_ACTION.fullmatch(path):
        key = f"admin/users/{{user_id}}/{match.group(1)}"
    if method not in PUBLIC_ROUTES.get(key, frozenset()):
        return False
    raw = scope.get("raw_path")
    literal = (_PREFIX + path).encode("ascii")
    return not isinstance(raw, bytes) or raw.split(b"?", 1)[0].endswith(literal)
