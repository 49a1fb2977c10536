"""Wiring of the fetcher service: settings, runtime, cache, routes, lifespan. No logic here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from services.fetcher.api import build_router
from services.fetcher.cache import ArtifactCache
from services.fetcher.connectors.hf import HuggingFaceConnector
from services.fetcher.connectors.kaggle import KaggleConnector
from services.fetcher.connectors.s3 import S3Connector
from services.fetcher.connectors.sql import SqlConnector
from services.fetcher.connectors.url import UrlConnector
from services.fetcher.handlers import build_handlers
from services.fetcher.jobs import JobRunner
from services.fetcher.naming import migrate_to_keyed_names
from services.fetcher.service import Fetcher
from services.fetcher.settings import FetcherSettings
from shared.bus import Bus
from shared.limits import install_body_limits
from shared.runtime import ServiceRuntime, health_router
from shared.secrets import KeyService, SecretStore
from shared.service.app import two_phase
from shared.service.http_errors import install_error_handlers
from shared.store import ArtifactStore

__all__ = ["create_app"]

MIGRATIONS = Path(__file__).parent / "migrations"


class _Deferred:
    """Filled in the lifespan, once the runtime's key service is connected."""

    cache: ArtifactCache
    runner: JobRunner


def create_app(
    settings: FetcherSettings | None = None,
    *,
    bus: Bus | None = None,
    vault: tuple[SecretStore, KeyService] | None = None,
) -> FastAPI:
    """Build the fetcher service's ASGI app; resources open in its lifespan."""
    settings = settings or FetcherSettings()
    runtime = ServiceRuntime(settings, migrations=[MIGRATIONS], bus=bus, vault=vault)
    state = _Deferred()

    async def wire() -> None:
        """Build what needs the key service, then the handlers (before any delivery)."""
        store = ArtifactStore(
            settings.resolved_store_dir(),
            runtime.keys,
            settings.transit_key,
            min_free_bytes=settings.store_min_free_bytes,
        )
        await asyncio.to_thread(migrate_to_keyed_names, runtime.db, store)
        state.cache = ArtifactCache(
            db=runtime.db,
            store=store,
            max_bytes=settings.cache_max_bytes,
            lease_seconds=settings.lease_seconds,
            verify=settings.verify_cached,
            user_quota_bytes=settings.user_storage_quota_bytes,
        )
        work_dir = settings.resolved_work_dir()
        sql = SqlConnector(
            allow_hosts=settings.fetch_allow_hosts,
            connect_timeout=settings.connect_timeout,
            statement_timeout=settings.db_statement_timeout,
            max_bytes=settings.db_max_bytes,
            batch_rows=settings.db_batch_rows,
        )
        connectors = {
            "s3": S3Connector(
                allow_hosts=settings.fetch_allow_hosts,
                connect_timeout=settings.connect_timeout,
                read_timeout=settings.read_timeout,
                part_bytes=settings.s3_part_bytes,
                partial_dir=work_dir / "s3-partial",
            ),
            "postgresql": sql,
            "mysql": sql,
            "hf": HuggingFaceConnector(
                endpoint=settings.hf_endpoint, timeout=settings.connect_timeout
            ),
            "kaggle": KaggleConnector(
                environment=settings.kaggle_api_environment, endpoint=settings.kaggle_endpoint
            ),
            "https": UrlConnector(
                max_bytes=settings.url_max_bytes,
                allow_hosts=settings.fetch_allow_hosts,
                connect_timeout=settings.connect_timeout,
                read_timeout=settings.read_timeout,
                ca_bundle=settings.url_ca_bundle,
            ),
        }
        fetcher = Fetcher(
            cache=state.cache,
            connectors=connectors,
            work_dir=work_dir,
            progress_interval=settings.progress_interval,
        )
        await asyncio.to_thread(fetcher.sweep_scratch)
        state.runner = JobRunner(
            runtime=runtime,
            fetcher=fetcher,
            attempts=settings.fetch_attempts,
            retry_delay=settings.retry_delay,
            claim_seconds=settings.lease_seconds,
        )
        runtime.on(build_handlers(runtime, state.runner))
        app.state.cache, app.state.runner = state.cache, state.runner

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with two_phase(runtime, wire):
            await state.runner.resume()
            runtime.spawn(state.runner.watch(), name="fetch-job-watch")
            yield

    app = FastAPI(title="aidp fetcher", lifespan=lifespan)
    app.state.runtime = runtime
    app.include_router(health_router(lambda request: request.app.state.runtime))
    app.include_router(build_router(lambda request: request.app.state.cache))
    install_error_handlers(app)
    install_body_limits(app, settings, upload_paths={"/internal/uploads"})
    return app
