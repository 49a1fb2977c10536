"""A running fetcher service on the memory bus, and helpers to drive it with events."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from services.fetcher.main import create_app
from services.fetcher.models import FetchJob
from services.fetcher.settings import FetcherSettings
from shared.bus import Bus, create_bus
from shared.events import Envelope, ProjectCreated, RunCancelled, new_event
from shared.secrets import InMemoryVault
from tests.support.service_auth import as_service

OBSERVED = ("ArtifactsCached", "ArtifactsFailed", "CachedRevisionUsed", "FetchProgress")


@dataclass
class Fetcher:
    app: FastAPI
    bus: Bus
    settings: FetcherSettings
    vault: Any  # InMemoryVault or VaultClient
    events: list[Envelope] = field(default_factory=list)

    @property
    def cache(self) -> Any:
        return self.app.state.cache

    @property
    def store_dir(self) -> Path:
        return self.settings.resolved_store_dir()

    async def start_run(
        self, spec: dict[str, Any], *, owner: str | None = None, run_id: uuid.UUID | None = None
    ) -> uuid.UUID:
        run_id = run_id or uuid.uuid4()
        owner_id = uuid.UUID(owner) if owner else uuid.uuid4()
        await self.bus.publish(
            new_event(
                ProjectCreated(owner_id=owner_id, spec=spec), project_id=uuid.uuid4(), run_id=run_id
            )
        )
        return run_id

    async def outcome(self, run_id: uuid.UUID, timeout: float = 30) -> Envelope:
        """The ArtifactsCached / ArtifactsFailed of ``run_id``."""
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            for env in self.events:
                if env.run_id == run_id and env.type in ("ArtifactsCached", "ArtifactsFailed"):
                    return env
            await asyncio.sleep(0.02)
        raise TimeoutError(f"no outcome for run {run_id}")

    async def fetch(
        self, spec: dict[str, Any], *, owner: str | None = None, timeout: float = 30
    ) -> Envelope:
        return await self.outcome(await self.start_run(spec, owner=owner), timeout)

    async def cancel(self, run_id: uuid.UUID) -> None:
        await self.bus.publish(new_event(RunCancelled(), run_id=run_id))

    def outcomes(self, run_id: uuid.UUID) -> list[Envelope]:
        """Every distinct ArtifactsCached / ArtifactsFailed of ``run_id`` seen so far."""
        seen = {
            e.id: e
            for e in self.events
            if e.run_id == run_id and e.type in ("ArtifactsCached", "ArtifactsFailed")
        }
        return list(seen.values())

    def add_pending_job(
        self,
        body: dict[str, Any],
        *,
        owner: str | None = None,
        claimed_by: str | None = None,
        claim_expires_at: datetime | None = None,
    ) -> uuid.UUID:
        """Write a pending job straight into the database, as a crashed replica leaves it."""
        run_id, owner_id = uuid.uuid4(), uuid.UUID(owner) if owner else uuid.uuid4()
        cause = new_event(
            ProjectCreated(owner_id=owner_id, spec=body), project_id=uuid.uuid4(), run_id=run_id
        )
        with self.app.state.runtime.db.session() as s:
            s.add(
                FetchJob(
                    run_id=run_id,
                    project_id=cause.project_id,
                    owner_id=str(owner_id),
                    spec=json.dumps(body),
                    cause=cause.model_dump_json(),
                    claimed_by=claimed_by,
                    claim_expires_at=claim_expires_at,
                )
            )
            s.commit()
        return run_id

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://fetcher",
            auth=as_service("fetcher"),
        )


def spec(
    model: str, dataset: str | None = None, secrets: list[str] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "t",
        "model": model,
        "task": "custom",
        "train": {"entrypoint": "train.py"},
        "secrets": secrets or [],
    }
    if dataset:
        body["dataset"] = dataset
    return body


@asynccontextmanager
async def running_fetcher(
    tmp_path: Path,
    *,
    vault: Any = None,  # a SecretStore + KeyService: InMemoryVault or a real VaultClient
    bus_url: str = "memory://",
    database_url: str | None = None,
    **overrides: Any,
) -> AsyncIterator[Fetcher]:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "database_url": database_url or f"sqlite:///{tmp_path / 'fetcher.db'}",
        "bus_url": bus_url,
        "fetch_attempts": 1,
        "progress_interval": 0.01,
    }
    values.update(overrides)
    settings = FetcherSettings(**values)
    vault = vault or InMemoryVault()
    bus = create_bus(bus_url)
    await bus.connect()
    app = create_app(settings, bus=bus, vault=(vault, vault))
    harness = Fetcher(app=app, bus=bus, settings=settings, vault=vault)

    async def collect(env: Envelope) -> None:
        harness.events.append(env)

    await bus.subscribe(f"observer-{uuid.uuid4().hex[:6]}", list(OBSERVED), collect)
    async with app.router.lifespan_context(app):
        yield harness
    await bus.close()
