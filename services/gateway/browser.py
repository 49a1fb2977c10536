"""Browser hardening: security headers on every gateway response, and API docs (Swagger UI)
served from files shipped in the package, never from a CDN.

The policy allows only the gateway's own origin: scripts and styles come from the built
web UI's files (no inline script, no ``eval``), WebSockets go to the same host
(``connect-src 'self'`` covers ``ws:``/``wss:`` of the page's own origin), images may also
be ``data:`` URIs (the favicon), and no site may frame the UI (clickjacking). HSTS is sent
only when the gateway itself serves TLS: over plain HTTP it would be ignored at best, and
would pin a name to HTTPS that may not serve it at worst.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "DOCS_URL",
    "SecurityHeadersMiddleware",
    "install_local_docs",
    "swagger_assets_dir",
]

DOCS_URL = "/api/docs"
_ASSETS_URL = "/api/docs/assets"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

#: One year, subdomains excluded (the gateway cannot speak for other names on its domain).
_HSTS = b"max-age=31536000"


class SecurityHeadersMiddleware:
    """Add the security headers to every HTTP response (a header the app set wins)."""

    def __init__(self, app: ASGIApp, *, tls: bool) -> None:
        self.app = app
        headers = [
            (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]
        if tls:
            headers.append((b"strict-transport-security", _HSTS))
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", ())}
                extra = [(n, v) for n, v in self.headers if n not in present]
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


def swagger_assets_dir() -> Path:
    """The Swagger UI distribution shipped by the ``swagger-ui-bundle`` package."""
    from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

    return Path(swagger_ui_path)


_DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>aidp API</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{docs}/init.js"></script>
</body>
</html>
"""

# An external script, not an inline one: the policy allows no inline script.
_DOCS_INIT = """window.ui = SwaggerUIBundle({{
  url: {openapi!r},
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
}});
"""


def install_local_docs(app: FastAPI, *, openapi_url: str) -> None:
    """Serve Swagger UI at ``/api/docs`` from the packaged assets (create the app with
    ``docs_url=None``)."""
    page = _DOCS_PAGE.format(assets=_ASSETS_URL, docs=DOCS_URL)
    init = _DOCS_INIT.format(openapi=openapi_url)
    app.mount(_ASSETS_URL, StaticFiles(directory=swagger_assets_dir()), name="swagger-assets")

    @app.get(DOCS_URL, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get(f"{DOCS_URL}/init.js", include_in_schema=False)
    async def docs_init() -> Response:
        return Response(init, media_type="text/javascript")
