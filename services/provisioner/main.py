"""Wiring of the provisioner service: settings, runtime, routes, lifespan. No logic here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from services.provisioner.api import internal_router
from services.provisioner.cloud_access import CloudAccessPolicy
from services.provisioner.cloud_access_api import cloud_access_router
from services.provisioner.envs.builder import AnsibleEnvBuilder, EnvBuilder
from services.provisioner.factory import driver_factory
from services.provisioner.handlers import build_handlers
from services.provisioner.locks import LockStore
from services.provisioner.service import DriverFactory, Provisioner
from services.provisioner.settings import ProvisionerSettings
from shared.bus import Bus
from shared.runtime import ServiceRuntime, health_router
from shared.secrets import KeyService, SecretStore
from shared.service.app import two_phase
from shared.service.http_errors import install_error_handlers

__all__ = ["create_app"]

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(
    settings: ProvisionerSettings | None = None,
    *,
    bus: Bus | None = None,
    vault: tuple[SecretStore, KeyService] | None = None,
    drivers: DriverFactory | None = None,
    builder: EnvBuilder | None = None,
) -> FastAPI:
    """Build the provisioner service's ASGI app; resources open in its lifespan.

    ``drivers``/``builder`` replace the real node drivers and Ansible (unit tests only).
    """
    settings = settings or ProvisionerSettings()
    runtime = ServiceRuntime(settings, migrations=[MIGRATIONS], bus=bus, vault=vault)
    locks = LockStore(runtime.db)
    cloud_access = CloudAccessPolicy(runtime.db, settings)
    provisioner = Provisioner(
        runtime=runtime,
        settings=settings,
        drivers=drivers
        or driver_factory(
            settings,
            secrets=lambda: runtime.secrets,
            runs_holding=lambda provider: provisioner.run_ids_holding(provider),
            platform_allowed=cloud_access.allows,
        ),
        builder=builder or AnsibleEnvBuilder(settings),
        locks=locks,
        cloud_access=cloud_access,
    )

    async def wire() -> None:
        """Resume the unfinished jobs this replica can claim and start the lease heartbeat
        and the sweeps before the queue is subscribed:
        a delivery (a release, say) never finds its run's resumed job not scheduled yet,
        and never has a resume schedule a second job after it."""
        await provisioner.resume()
        runtime.spawn(provisioner.heartbeat_forever(), name="leases")
        runtime.spawn(provisioner.sweep_forever(), name="sweep")
        runtime.on(build_handlers(runtime, provisioner))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with two_phase(runtime, wire):
            yield

    app = FastAPI(title="aidp provisioner", lifespan=lifespan)
    app.state.runtime = runtime
    app.state.provisioner = provisioner
    app.include_router(health_router(lambda request: request.app.state.runtime))
    app.include_router(internal_router())
    app.include_router(cloud_access_router(cloud_access))
    install_error_handlers(app)
    return app
