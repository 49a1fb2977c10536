"""Wiring every service shares: start order logging → telemetry → db → secrets → bus →
consumers → outbox relay, and the reverse on stop.

A service's ``main.py`` builds a :class:`ServiceRuntime` from its settings, its migration
chain and its handlers, and enters :meth:`ServiceRuntime.lifespan` from the FastAPI
lifespan. Tests and the embedded runner can inject an already-connected bus or vault.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlmodel import Session

from shared.bus import Bus, create_bus
from shared.db import Database, run_sync
from shared.errors import AidpError
from shared.events import Envelope
from shared.outbox import OutboxRelay, add_to_outbox
from shared.secrets import KeyService, SecretStore, connect_vault
from shared.secrets.policies import SERVICE_NAMES
from shared.service.http_errors import install_error_handlers
from shared.service_auth import ServiceAuth, signing_keys_for
from shared.settings import BaseServiceSettings
from shared.telemetry import setup_logging, setup_tracing

#: ``install_error_handlers`` lives in :mod:`shared.service.http_errors` (the one HTTP error
#: installer); it stays importable from here for the services that import it from here.
__all__ = ["EventHandler", "ServiceRuntime", "health_router", "install_error_handlers"]

log = logging.getLogger(__name__)

EventHandler = Callable[[Envelope], Awaitable[None]]


class ServiceRuntime:
    """The connected resources of one service instance."""

    def __init__(
        self,
        settings: BaseServiceSettings,
        *,
        migrations: list[Path] | None = None,
        bus: Bus | None = None,
        vault: tuple[SecretStore, KeyService] | None = None,
        prefetch: int = 16,
        max_deliveries: int = 5,
    ) -> None:
        self.settings = settings
        self.name = settings.service_name
        self.migrations = migrations or []
        self.db = Database(settings.resolved_database_url(), pool_size=settings.db_pool_size)
        self._injected_bus = bus
        self.bus: Bus = bus or create_bus(settings.bus_url)
        self._vault = vault
        self.secrets: SecretStore
        self.keys: KeyService
        #: this service's credentials for others' internal APIs and the verifier of its own
        self.service_auth = ServiceAuth(self.name, known_callers=frozenset(SERVICE_NAMES))
        self.relay = OutboxRelay(self.db, self.bus, service=self.name)
        self.prefetch = prefetch
        self.max_deliveries = max_deliveries
        self._handlers: dict[str, EventHandler] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self.ready = False
        self.extra_checks: dict[str, Callable[[], Awaitable[bool]]] = {}

    # -- events -------------------------------------------------------------------------

    def on(self, handlers: Mapping[str, EventHandler]) -> None:
        """Register handlers by event type; the service queue is bound to these types."""
        self._handlers.update(handlers)

    def stage(self, session: Session, envelope: Envelope) -> None:
        """Put ``envelope`` in this service's outbox within ``session`` (commit publishes)."""
        add_to_outbox(session, envelope, service=self.name)

    def published(self) -> None:
        """Call after committing staged events to publish them without waiting for a poll."""
        self.relay.notify()

    async def _dispatch(self, envelope: Envelope) -> None:
        handler = self._handlers.get(envelope.type)
        if handler is not None:
            await handler(envelope)

    def spawn(self, coro: Awaitable[Any], *, name: str) -> asyncio.Task[Any]:
        """Run a background task that is cancelled when the service stops."""
        task = asyncio.ensure_future(coro)
        task.set_name(f"{self.name}:{name}")
        self._tasks.append(task)
        return task

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the resources, then subscribe: for services whose handlers need nothing
        that is built from the opened resources (else see :mod:`shared.service.app`)."""
        await self.open()
        await self.subscribe()

    async def open(self) -> None:
        """Phase one: logging, tracing, migrated database, Vault (secrets, keys), service
        auth and a connected bus — nothing is delivered yet."""
        setup_logging(self.settings.log_level, json_lines=self.settings.log_json)
        setup_tracing(self.name, self.settings.otel_exporter, self.settings.otel_sample_ratio)
        await run_sync(self.db.migrate, *self.migrations, service=self.name)
        if self._vault is None:
            self._vault = await asyncio.to_thread(connect_vault, self.settings)
        self.secrets, self.keys = self._vault
        await asyncio.to_thread(self._bind_service_auth)
        await self.bus.connect()

    async def subscribe(self) -> None:
        """Phase two: subscribe the registered handlers, start the outbox relay, ready."""
        if self._handlers:
            await self.bus.subscribe(
                self.name,
                sorted(self._handlers),
                self._dispatch,
                prefetch=self.prefetch,
                max_deliveries=self.max_deliveries,
            )
        self.spawn(self.relay.run(), name="outbox-relay")
        self.ready = True
        log.info("%s started (bus=%s)", self.name, type(self.bus).__name__)

    def _bind_service_auth(self) -> None:
        keys = signing_keys_for(self.settings, self.keys)
        self.service_auth.bind(keys)
        try:
            if not keys.ensure(self.name):
                log.warning(
                    "service auth: no signing key for %s and no right to create it: its calls"
                    " to internal APIs fail until an operator creates transit key aidp-svc-%s",
                    self.name,
                    self.name,
                )
        except (ValueError, AidpError) as exc:  # Vault down for a moment: minting retries
            log.warning("service auth: signing key of %s not checked: %s", self.name, exc)

    async def stop(self) -> None:
        """Graceful shutdown: readiness goes false first; the bus stops delivering and lets
        running handlers finish (or hands their messages back); then background jobs are
        cancelled — their state is in the database, so a replica or the next start resumes
        them — and the database is closed."""
        self.ready = False
        if self._injected_bus is None:
            await self.bus.close()
        for task in reversed(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.db.aio.close()
        self.db.dispose()
        log.info("%s stopped", self.name)

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[ServiceRuntime]:
        await self.start()
        try:
            yield self
        finally:
            await self.stop()

    def _ping_db(self) -> None:
        with self.db.session() as session:
            session.connection().exec_driver_sql("SELECT 1")

    async def readiness(self) -> dict[str, bool]:
        checks: dict[str, bool] = {"started": self.ready}
        try:
            await run_sync(self._ping_db)
            checks["db"] = True
        except Exception:
            checks["db"] = False
        checks["bus"] = await self.bus.healthy()
        try:
            checks["vault"] = await asyncio.to_thread(self.secrets.healthy)
        except Exception:
            checks["vault"] = False
        for name, check in self.extra_checks.items():
            try:
                checks[name] = await check()
            except Exception:
                checks[name] = False
        return checks


def health_router(runtime_of: Callable[[Request], ServiceRuntime]) -> APIRouter:
    """``/healthz`` (process alive) and ``/readyz`` (db, bus, vault usable)."""
    router = APIRouter(tags=["ops"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", responses={503: {"description": "not ready"}})
    async def readyz(request: Request) -> JSONResponse:
        checks = await runtime_of(request).readiness()
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    return router
