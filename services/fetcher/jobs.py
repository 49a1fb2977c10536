"""Fetch jobs: one per run, recorded by the handler, run as a background task.

States: ``pending`` → ``done`` | ``failed`` | ``cancelled``. Each transition commits with
its event (``ArtifactsCached`` / ``ArtifactsFailed``) through the outbox. Pending jobs are
resumed when the service starts (a killed download left no recorded artifact, so it is
simply fetched again).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from dataclasses import dataclass, field

from sqlmodel import select

from services.fetcher.connectors import Credentials
from services.fetcher.errors import FetchCancelled, FetchFailed
from services.fetcher.models import FetchJob, utcnow
from services.fetcher.service import Fetcher
from shared.events import (
    ArtifactRef,
    ArtifactsCached,
    ArtifactsFailed,
    Envelope,
    EventPayload,
    FetchProgress,
    new_event,
)
from shared.runtime import ServiceRuntime
from shared.secrets import SecretStore
from shared.spec import ProjectSpec, Source

__all__ = ["JobRunner", "read_credentials"]

log = logging.getLogger(__name__)

_SECRET_FIELDS = {
    "HF_TOKEN": "hf_token",
    "KAGGLE_API_TOKEN": "kaggle_token",
    "KAGGLE_USERNAME": "kaggle_username",
    "KAGGLE_KEY": "kaggle_key",
}


def read_credentials(
    secrets: SecretStore, *, owner_id: str | None, names: list[str]
) -> Credentials:
    """The provider credentials the spec names, read from Vault for this run only."""
    values: dict[str, str] = {}
    if owner_id:
        for name in names:
            field_name = _SECRET_FIELDS.get(name)
            if field_name is None:
                continue
            secret = secrets.get_user_secret(owner_id, name)
            if secret is not None:
                values[field_name] = secret.reveal()
    return Credentials(**values)


@dataclass
class _Running:
    task: asyncio.Task[None] | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)


class JobRunner:
    """Runs fetch jobs in the background and publishes their outcome."""

    def __init__(
        self,
        *,
        runtime: ServiceRuntime,
        fetcher: Fetcher,
        attempts: int = 3,
        retry_delay: float = 2.0,
    ) -> None:
        self.runtime = runtime
        self.fetcher = fetcher
        self.attempts = attempts
        self.retry_delay = retry_delay
        self.running: dict[uuid.UUID, _Running] = {}

    def start(self, run_id: uuid.UUID) -> None:
        """Run the job of ``run_id`` in the background (once per process)."""
        if run_id in self.running:
            return
        entry = self.running[run_id] = _Running()
        entry.task = self.runtime.spawn(self._run(run_id, entry), name=f"fetch-{run_id}")

    async def resume(self) -> None:
        """Start every pending job (after a restart)."""
        with self.runtime.db.session() as s:
            run_ids = list(s.exec(select(FetchJob.run_id).where(FetchJob.status == "pending")))
        for run_id in run_ids:
            self.start(run_id)

    def cancel(self, run_id: uuid.UUID) -> None:
        """Stop the job of ``run_id`` (if running here) and unpin its artifacts."""
        entry = self.running.get(run_id)
        if entry is not None:
            entry.cancelled.set()
        self.fetcher.cache.unpin(run_id)

    async def _run(self, run_id: uuid.UUID, entry: _Running) -> None:
        try:
            await self._run_job(run_id, entry)
        except Exception:
            log.exception("fetch job %s crashed", run_id)
        finally:
            self.running.pop(run_id, None)

    async def _run_job(self, run_id: uuid.UUID, entry: _Running) -> None:
        with self.runtime.db.session() as s:
            job = s.get(FetchJob, run_id)
        if job is None or job.status != "pending":
            return
        cause = Envelope.model_validate_json(job.cause)
        spec = ProjectSpec.model_validate(json.loads(job.spec))
        sources = [spec.model_source()]
        if (dataset := spec.dataset_source()) is not None:
            sources.append(dataset)
        creds = await asyncio.to_thread(
            read_credentials, self.runtime.secrets, owner_id=job.owner_id, names=spec.secrets
        )
        loop = asyncio.get_running_loop()
        refs: list[ArtifactRef] = []
        for source in sources:
            try:
                refs.append(await self._fetch_with_retries(source, job, creds, cause, entry, loop))
            except FetchCancelled:
                self._finish(run_id, "cancelled", None, cause)
                return
            except FetchFailed as exc:
                self.fetcher.cache.unpin(run_id)
                self._finish(
                    run_id,
                    "failed",
                    ArtifactsFailed(source=source.uri, reason=exc.message, retryable=exc.retryable),
                    cause,
                )
                return
            except Exception as exc:  # unexpected: report, never leave the run hanging
                log.exception("fetching %s for run %s failed", source.uri, run_id)
                self.fetcher.cache.unpin(run_id)
                self._finish(
                    run_id,
                    "failed",
                    ArtifactsFailed(
                        source=source.uri,
                        reason=f"Unexpected error while fetching {source.uri} "
                        f"({type(exc).__name__}); try the run again.",
                        retryable=True,
                    ),
                    cause,
                )
                return
        if entry.cancelled.is_set():
            self._finish(run_id, "cancelled", None, cause)
            return
        self._finish(run_id, "done", ArtifactsCached(artifacts=refs), cause)

    async def _fetch_with_retries(
        self,
        source: Source,
        job: FetchJob,
        creds: Credentials,
        cause: Envelope,
        entry: _Running,
        loop: asyncio.AbstractEventLoop,
    ) -> ArtifactRef:
        def progress(uri: str, done: int, total: int | None) -> None:
            self._emit(FetchProgress(source=uri, bytes_done=done, bytes_total=total), cause)
            loop.call_soon_threadsafe(self.runtime.published)

        for attempt in range(1, self.attempts + 1):
            try:
                return await asyncio.to_thread(
                    self.fetcher.fetch,
                    source,
                    run_id=job.run_id,
                    owner_id=job.owner_id,
                    creds=creds,
                    progress=progress,
                    cancelled=entry.cancelled,
                )
            except FetchFailed as exc:
                if not exc.retryable or attempt == self.attempts or entry.cancelled.is_set():
                    raise
                log.warning("fetching %s failed (%s); retry %d", source.uri, exc.message, attempt)
                await asyncio.sleep(self.retry_delay * attempt)
        raise AssertionError("unreachable")

    def _emit(self, payload: EventPayload, cause: Envelope) -> None:
        with self.runtime.db.session() as s:
            self.runtime.stage(s, new_event(payload, cause=cause))
            s.commit()

    def _finish(
        self, run_id: uuid.UUID, status: str, payload: EventPayload | None, cause: Envelope
    ) -> None:
        with self.runtime.db.session() as s:
            job = s.get(FetchJob, run_id)
            if job is None or job.status != "pending":
                return  # cancelled or finished elsewhere meanwhile
            job.status, job.updated_at = status, utcnow()
            if isinstance(payload, ArtifactsFailed):
                job.reason = payload.reason
            if payload is not None:
                self.runtime.stage(s, new_event(payload, cause=cause))
            s.commit()
        self.runtime.published()
