"""Wiring of the auth service: settings, runtime, routes, lifespan. No logic here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from services.auth import internal, routes, sso_routes
from services.auth.context import build_context
from services.auth.errors import install_validation_handlers
from services.auth.handlers import build_handlers
from services.auth.settings import AuthSettings
from shared.bus import Bus
from shared.limits import install_body_limits
from shared.runtime import ServiceRuntime, health_router, install_error_handlers
from shared.secrets import KeyService, SecretStore

__all__ = ["create_app"]

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(
    settings: AuthSettings | None = None,
    *,
    bus: Bus | None = None,
    vault: tuple[SecretStore, KeyService] | None = None,
) -> FastAPI:
    """Build the auth service's ASGI app; resources open in its lifespan.

    Public routes live at ``/api/auth/...`` (the gateway proxies them path for path);
    the gateway-only API at ``/internal/...``.
    """
    settings = settings or AuthSettings()
    runtime = ServiceRuntime(settings, migrations=[MIGRATIONS], bus=bus, vault=vault)
    runtime.on(build_handlers(runtime))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime.lifespan():
            app.state.auth = await asyncio.to_thread(
                build_context,
                settings=settings,
                db=runtime.db,
                store=runtime.secrets,
                stage=runtime.stage,
                published=runtime.published,
            )
            yield

    app = FastAPI(title="aidp auth", lifespan=lifespan)
    app.state.runtime = runtime
    app.include_router(health_router(lambda request: request.app.state.runtime))
    app.include_router(routes.router)
    app.include_router(sso_routes.router)
    app.include_router(internal.router)
    install_error_handlers(app)
    install_body_limits(app, settings)
    install_validation_handlers(app)
    return app
