"""``/api/auth/*``: forwarded verbatim to the auth service, bodies streamed both ways.

``X-Forwarded-For`` is set to the caller's address as this gateway sees it (uvicorn
resolves trusted proxies first, see ``forwarded_allow_ips``), never taken from the
client, so the auth service's per-address login limit cannot be dodged.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from services.gateway.deps import GatewayDep

__all__ = ["router"]

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
        "x-aidp-user",
    }
)


@router.api_route(
    "/api/auth/{path:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
)
async def auth_proxy(path: str, request: Request, gateway: GatewayDep) -> StreamingResponse:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
    headers["X-Forwarded-For"] = request.client.host if request.client else "unknown"
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
