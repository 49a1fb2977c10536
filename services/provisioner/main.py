"""Wiring of the provisioner service: settings, runtime, routes, lifespan. No logic here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from services.provisioner.handlers import build_handlers
from services.provisioner.settings import ProvisionerSettings
from shared.bus import Bus
from shared.runtime import ServiceRuntime, health_router, install_error_handlers
from shared.secrets import KeyService, SecretStore

__all__ = ["create_app"]

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(
    settings: ProvisionerSettings | None = None,
    *,
    bus: Bus | None = None,
    vault: tuple[SecretStore, KeyService] | None = None,
) -> FastAPI:
    """Build the provisioner service's ASGI app; resources open in its lifespan."""
    settings = settings or ProvisionerSettings()
    runtime = ServiceRuntime(settings, migrations=[MIGRATIONS], bus=bus, vault=vault)
    runtime.on(build_handlers(runtime))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with runtime.lifespan():
            yield

    app = FastAPI(title="aidp provisioner", lifespan=lifespan)
    app.state.runtime = runtime
    app.include_router(health_router(lambda request: request.app.state.runtime))
    install_error_handlers(app)
    return app
