"""Fetch jobs: one per run, recorded by the handler, run as a background task.

States: ``pending`` → ``done`` | ``failed`` | ``cancelled``. Each transition commits with
its event (``ArtifactsCached`` / ``ArtifactsFailed``) through the outbox. Pending jobs are
resumed when the service starts (a killed download left no recorded artifact, so it is
simply fetched again).

Replicas share the jobs table, so a job is *claimed* before it runs: a conditional
``UPDATE`` sets ``claimed_by``/``claim_expires_at`` only where the job is pending and
unclaimed (or its claim expired), and only the replica whose update changed the row runs
it. The claim is renewed while the job runs; the final transition is again conditional on
still holding it, so exactly one replica emits the outcome. A watcher starts pending jobs
whose claim expired (their replica died) — this is how a killed replica's jobs resume on
the others without a restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import stamina
from sqlalchemy import update
from sqlmodel import col

from services.fetcher.connectors import Credentials
from services.fetcher.errors import FetchCancelled, FetchFailed
from services.fetcher.models import FETCH_JOB, FetchJob, FetchJobState, Resolution, utcnow
from services.fetcher.preflight import check_artifacts
from services.fetcher.service import Fetcher
from shared.db import run_sync
from shared.events import (
    ArtifactRef,
    ArtifactsCached,
    ArtifactsFailed,
    CachedRevisionUsed,
    DatasetValidated,
    Envelope,
    EventPayload,
    FetchProgress,
    new_event,
)
from shared.runtime import ServiceRuntime
from shared.secrets import SecretStore
from shared.service.leases import RowLeases
from shared.spec import LLM_TASKS, ProjectSpec, Source
from shared.urls import public_url, scrub_urls

__all__ = ["JobRunner", "read_credentials"]

log = logging.getLogger(__name__)

_SECRET_FIELDS = {
    "HF_TOKEN": "hf_token",
    "KAGGLE_API_TOKEN": "kaggle_token",
    "KAGGLE_USERNAME": "kaggle_username",
    "KAGGLE_KEY": "kaggle_key",
    "S3_ACCESS_KEY_ID": "s3_access_key_id",
    "S3_SECRET_ACCESS_KEY": "s3_secret_access_key",
    "S3_SESSION_TOKEN": "s3_session_token",
    "S3_ENDPOINT_URL": "s3_endpoint_url",
    "DB_USER": "db_user",
    "DB_PASSWORD": "db_password",
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
    lost: bool = False  # the claim was taken over by another replica


class JobRunner:
    """Runs fetch jobs in the background and publishes their outcome."""

    def __init__(
        self,
        *,
        runtime: ServiceRuntime,
        fetcher: Fetcher,
        attempts: int = 3,
        retry_delay: float = 2.0,
        claim_seconds: float = 60.0,
    ) -> None:
        self.runtime = runtime
        self.fetcher = fetcher
        self.attempts = attempts
        self.retry_delay = retry_delay
        self.claim = timedelta(seconds=claim_seconds)
        self.holder = uuid.uuid4().hex
        self.leases = RowLeases(
            runtime.db,
            key=FetchJob.run_id,
            holder=FetchJob.claimed_by,
            until=FetchJob.claim_expires_at,
            instance=self.holder,
            seconds=claim_seconds,
            eligible=lambda: [col(FetchJob.status) == "pending"],
        )
        self.running: dict[uuid.UUID, _Running] = {}

    def start(self, run_id: uuid.UUID) -> None:
        """Run the job of ``run_id`` in the background (once per process)."""
        if run_id in self.running:
            return
        entry = self.running[run_id] = _Running()
        entry.task = self.runtime.spawn(self._run(run_id, entry), name=f"fetch-{run_id}")

    async def resume(self) -> None:
        """Start every pending job no live replica holds (after a restart)."""
        for run_id in await run_sync(self._unheld):
            self.start(run_id)

    def _unheld(self) -> list[uuid.UUID]:
        return self.leases.unheld()

    async def watch(self) -> None:
        """Forever: take over pending jobs whose replica stopped renewing its claim."""
        interval = max(self.claim.total_seconds() / 2, 0.2)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.resume()
            except Exception:  # the database may be briefly unavailable; try again later
                log.exception("looking for abandoned fetch jobs failed")

    def try_claim(self, run_id: uuid.UUID) -> bool:
        """Claim (or renew the claim of) a pending job; True when this replica holds it."""
        return self.leases.claim(run_id)

    async def _keep_claim(self, run_id: uuid.UUID, entry: _Running) -> None:
        while True:
            await asyncio.sleep(max(self.claim.total_seconds() / 3, 0.1))
            try:
                held = await run_sync(self.try_claim, run_id)
            except Exception:
                log.exception("renewing the claim of fetch job %s failed", run_id)
                continue
            if not held:  # finished elsewhere, cancelled, or taken over after we stalled
                entry.lost = True
                entry.cancelled.set()
                return

    async def cancel(self, run_id: uuid.UUID) -> None:
        """Stop the job of ``run_id`` (if running here) and unpin its artifacts."""
        entry = self.running.get(run_id)
        if entry is not None:
            entry.cancelled.set()
        await run_sync(self.fetcher.cache.unpin, run_id)

    async def _run(self, run_id: uuid.UUID, entry: _Running) -> None:
        keeper: asyncio.Task[None] | None = None
        try:
            if not await run_sync(self.try_claim, run_id):
                return  # done, cancelled, or another replica runs it
            keeper = asyncio.ensure_future(self._keep_claim(run_id, entry))
            await self._run_job(run_id, entry)
        except Exception:
            log.exception("fetch job %s crashed", run_id)
        finally:
            if keeper is not None:
                keeper.cancel()
            self.running.pop(run_id, None)

    async def _run_job(self, run_id: uuid.UUID, entry: _Running) -> None:
        job = await run_sync(self._job, run_id)
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
                refs.append(
                    await self._fetch_with_retries(
                        source, job, creds, cause, entry, loop, offline_ok=not spec.strict_revisions
                    )
                )
                continue
            except FetchCancelled:
                failure: ArtifactsFailed | None = None
            except FetchFailed as exc:
                failure = ArtifactsFailed(
                    source=source.uri, reason=exc.message, retryable=exc.retryable
                )
            except Exception as exc:  # unexpected: report, never leave the run hanging
                log.exception("fetching %s for run %s failed", public_url(source.uri), run_id)
                failure = ArtifactsFailed(
                    source=source.uri,
                    reason=f"Unexpected error while fetching {source.uri} "
                    f"({type(exc).__name__}); try the run again.",
                    retryable=True,
                )
            if entry.lost:
                return  # another replica runs (and reports) this job now
            if failure is None:
                await run_sync(self._finish, run_id, "cancelled", None, cause)
            else:
                await run_sync(self.fetcher.cache.unpin, run_id)
                await run_sync(self._finish, run_id, "failed", failure, cause)
            return
        if entry.cancelled.is_set():
            if not entry.lost:
                await run_sync(self._finish, run_id, "cancelled", None, cause)
            return
        checked = await self._preflight(spec, refs)
        await run_sync(
            self._finish, run_id, "done", ArtifactsCached(artifacts=refs), cause, *checked
        )

    def _job(self, run_id: uuid.UUID) -> FetchJob | None:
        with self.runtime.db.session() as s:
            return s.get(FetchJob, run_id)

    async def _preflight(self, spec: ProjectSpec, refs: list[ArtifactRef]) -> list[EventPayload]:
        """The pre-flight check of an LLM task's data (``preflight/``): its event, staged
        with ArtifactsCached; the provisioner waits for it before creating any node."""
        if spec.task not in LLM_TASKS:
            return []
        keys = {ref.kind: ref.cache_key for ref in refs}
        if "model" not in keys or "dataset" not in keys:
            return []
        try:
            event = await asyncio.to_thread(
                check_artifacts,
                self.fetcher.cache.store,
                spec,
                model_key=keys["model"],
                dataset_key=keys["dataset"],
            )
        except Exception as exc:  # a bug of the check must not cost the user the run
            log.exception("pre-flight check crashed")
            event = DatasetValidated(
                task=spec.task,
                rows_checked=0,
                notes=[f"the pre-flight check could not run ({type(exc).__name__})"],
            )
        return [event]

    async def _fetch_with_retries(
        self,
        source: Source,
        job: FetchJob,
        creds: Credentials,
        cause: Envelope,
        entry: _Running,
        loop: asyncio.AbstractEventLoop,
        *,
        offline_ok: bool,
    ) -> ArtifactRef:
        def progress(uri: str, done: int, total: int | None) -> None:
            self._emit(FetchProgress(source=uri, bytes_done=done, bytes_total=total), cause)
            loop.call_soon_threadsafe(self.runtime.published)

        def stale(source: Source, resolution: Resolution, why: str) -> None:
            log.warning(
                "%s: provider unreachable, using the cached resolution %s",
                public_url(source.uri),
                resolution.revision,
            )
            warning = CachedRevisionUsed(
                source=source.uri,
                ref=source.revision or "",
                resolved_revision=resolution.revision,
                resolved_at=resolution.resolved_at.isoformat(),
                reason=f"{why.removesuffix('; it will be retried.')}. Using the last "
                "resolution of this ref from the cache; set strict_revisions: true in the spec "
                "to fail instead.",
            )
            self._emit(warning, cause)
            loop.call_soon_threadsafe(self.runtime.published)

        def worth_retrying(exc: Exception) -> bool:
            return isinstance(exc, FetchFailed) and exc.retryable and not entry.cancelled.is_set()

        # retry_delay, then twice it, ...: 2 s and 4 s by default (three attempts)
        async for attempt in stamina.retry_context(
            on=worth_retrying,
            attempts=self.attempts,
            timeout=None,
            wait_initial=self.retry_delay,
            wait_max=60.0,
            wait_jitter=0.0,
        ):
            with attempt:
                try:
                    return await asyncio.to_thread(
                        self.fetcher.fetch,
                        source,
                        run_id=job.run_id,
                        owner_id=job.owner_id,
                        creds=creds,
                        progress=progress,
                        cancelled=entry.cancelled,
                        offline_ok=offline_ok,
                        notice=stale,
                    )
                except FetchFailed as exc:
                    if worth_retrying(exc) and attempt.num < self.attempts:
                        log.warning(
                            "fetching %s failed (%s); retry %d",
                            public_url(source.uri),
                            scrub_urls(exc.message),
                            attempt.num,
                        )
                    raise
        raise AssertionError("unreachable")

    def _emit(self, payload: EventPayload, cause: Envelope) -> None:
        with self.runtime.db.session() as s:
            self.runtime.stage(s, new_event(payload, cause=cause))
            s.commit()

    def _finish(
        self,
        run_id: uuid.UUID,
        status: str,
        payload: EventPayload | None,
        cause: Envelope,
        *more: EventPayload,
    ) -> None:
        """Move the job out of ``pending`` and stage its event, only while holding its claim
        (one conditional UPDATE, so two replicas can never both report the job)."""
        # the UPDATE below only moves a pending job: check the target is one it may reach
        values: dict[str, object] = {
            "status": FETCH_JOB.check(FetchJobState.PENDING, status).value,
            "updated_at": utcnow(),
        }
        if isinstance(payload, ArtifactsFailed):
            values["reason"] = payload.reason
        with self.runtime.db.session() as s:
            result = s.execute(
                update(FetchJob)
                .where(
                    col(FetchJob.run_id) == run_id,
                    col(FetchJob.status) == "pending",
                    self.leases.held(),
                )
                .values(**values)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                s.rollback()
                return  # cancelled, finished or taken over elsewhere meanwhile
            for event in (payload, *more):
                if event is not None:
                    self.runtime.stage(s, new_event(event, cause=cause))
            s.commit()
        self.runtime.published()
