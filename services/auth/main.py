"""Wiring of the auth service: settings, runtime, routes, lifespan. No logic here.

The lifespan starts in two phases (:func:`shared.service.app.two_phase`): the context is
built from the opened database and Vault, then the queue is subscribed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from services.auth import internal, routes, sso_routes
from services.auth.context import build_context
from services.auth.errors import VALIDATION
from services.auth.handlers import build_handlers, identity_events
from services.auth.settings import AuthSettings
from shared.bus import Bus
from shared.events import SigningKeyRevoked
from shared.limits import install_body_limits
from shared.runtime import ServiceRuntime, health_router
from shared.secrets import KeyService, SecretStore
from shared.service.app import two_phase
from shared.service.http_errors import install_error_handlers

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

    async def wire() -> None:
        """The context (signing keyring, limiters, SSO provider) needs the opened database
        and Vault; it exists before the queue is subscribed and readiness turns true."""
        ctx = await asyncio.to_thread(
            build_context,
            settings=settings,
            db=runtime.db,
            store=runtime.secrets,
            stage=runtime.stage,
            published=runtime.published,
        )
        runtime.on(build_handlers(runtime, ctx))
        app.state.auth = ctx
        # every replica hears a signing key revoked on another one (its own queue)
        await runtime.bus.subscribe_broadcast(
            [SigningKeyRevoked.event_type()], identity_events(ctx)
        )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with two_phase(runtime, wire):
            yield

    app = FastAPI(title="aidp auth", lifespan=lifespan)
    app.state.runtime = runtime
    app.include_router(health_router(lambda request: request.app.state.runtime))
    app.include_router(routes.router)
    app.include_router(sso_routes.router)
    app.include_router(internal.router)
    install_error_handlers(app, validation=VALIDATION)
    install_body_limits(app, settings)
    return app
