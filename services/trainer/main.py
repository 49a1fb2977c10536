"""Wiring of the trainer service: settings, runtime, routes, lifespan. No logic here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from services.trainer.api import router
from services.trainer.app_state import TrainerState
from services.trainer.handlers import build_handlers
from services.trainer.openai_api import router as openai_router
from services.trainer.settings import TrainerSettings
from shared.bus import Bus
from shared.runtime import ServiceRuntime, health_router
from shared.secrets import KeyService, SecretStore
from shared.service.app import two_phase
from shared.service.http_errors import install_error_handlers

__all__ = ["create_app"]

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(
    settings: TrainerSettings | None = None,
    *,
    bus: Bus | None = None,
    vault: tuple[SecretStore, KeyService] | None = None,
) -> FastAPI:
    """Build the trainer service's ASGI app; resources open in its lifespan."""
    settings = settings or TrainerSettings()
    runtime = ServiceRuntime(settings, migrations=[MIGRATIONS], bus=bus, vault=vault)
    trainer = TrainerState(runtime, settings)

    async def wire() -> None:
        """Build what needs the key service (store, job runner, deployment manager), then
        the handlers: no event is delivered before what it calls exists."""
        await trainer.build()
        runtime.on(build_handlers(runtime, trainer))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with two_phase(runtime, wire):
            trainer.start()
            try:
                yield
            finally:
                await trainer.stop()

    app = FastAPI(title="aidp trainer", lifespan=lifespan)
    app.state.runtime = runtime
    app.state.trainer = trainer
    app.include_router(health_router(lambda request: request.app.state.runtime))
    app.include_router(router)
    app.include_router(openai_router)
    install_error_handlers(app)
    return app
