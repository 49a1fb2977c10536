"""The public OpenAPI document: the gateway's own routes plus the auth service's.

``/api/auth/*`` is a forwarding route in the gateway, so FastAPI alone would document one
catch-all path. The auth service's own document (fetched once it answers) replaces it with
the real routes, request bodies and statuses; the internal ``/internal/*`` routes are left out.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from services.gateway.downstream import Downstream

__all__ = ["install_openapi", "load_auth_document", "merge_auth_document"]

log = logging.getLogger(__name__)

_PROXY_PATH = "/api/auth/{path}"


def merge_auth_document(schema: dict[str, Any], auth: dict[str, Any]) -> dict[str, Any]:
    """Return ``schema`` with the auth service's public paths in place of the proxy path.

    Auth component names that clash with different gateway components are prefixed with
    ``Auth`` (and the auth paths' references rewritten), so neither side changes meaning.
    """
    ours = schema.setdefault("components", {}).setdefault("schemas", {})
    theirs = auth.get("components", {}).get("schemas", {})
    renames = {
        name: f"Auth{name}" for name, body in theirs.items() if name in ours and ours[name] != body
    }
    text = json.dumps({"paths": auth.get("paths", {}), "schemas": theirs})
    for old, new in renames.items():
        text = text.replace(f'"#/components/schemas/{old}"', f'"#/components/schemas/{new}"')
    renamed = json.loads(text)
    for name, body in renamed["schemas"].items():
        ours.setdefault(renames.get(name, name), body)
    paths = schema.setdefault("paths", {})
    auth_paths = {p: item for p, item in renamed["paths"].items() if p.startswith("/api/auth/")}
    if auth_paths:
        paths.pop(_PROXY_PATH, None)
        paths.update(auth_paths)
    return schema


async def load_auth_document(app: FastAPI, auth: Downstream, *, retry_every: float = 2.0) -> None:
    """Fetch the auth service's document into ``app.state.auth_openapi`` (retry until it
    answers: in distributed mode auth may start after the gateway)."""
    while True:
        try:
            response = await auth.request("GET", "/openapi.json")
            app.state.auth_openapi = response.json()
            return
        except Exception as exc:
            log.debug("auth OpenAPI document not available yet: %r", exc)
            await asyncio.sleep(retry_every)


def install_openapi(app: FastAPI) -> None:
    """Serve the merged document; ``app.state.auth_openapi`` is set once auth answers."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        auth = getattr(app.state, "auth_openapi", None)
        if auth is None:
            return schema  # not cached: the next request tries to include auth again
        app.openapi_schema = merge_auth_document(schema, auth)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
