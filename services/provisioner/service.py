"""The provisioner's jobs: a state machine per run in ``provisioner_runs``.

Handlers only record intent (a row, a state) in the same transaction as their inbox claim;
:class:`Provisioner` runs the long work in background tasks and emits events through the
outbox. Every state change goes through :meth:`Provisioner.transition`, which also stages
the event that announces it. Replicas share the database: a run's job works under the run's
lease (:mod:`services.provisioner.lease`, :mod:`services.provisioner.jobs`), and a replica
resumes at start (``resume``), and later takes over, only the unfinished runs whose lease is
free or expired.

States: requested → provisioning → ready → releasing → released, or → failed (partial
nodes torn down first); ready → replacing → ready when the trainer lost a node
(:mod:`services.provisioner.replacement`). Release happens after TrainingFailed, after
TrainingCompleted unless
the spec deploys (the trainer serves from the node: kept until the project is deleted, the
run cancelled or the deployment fails), on RunCancelled, ProjectDeleted and autostop.

This module keeps the run's state (records, transitions), schedules the jobs and holds the
steps they share (progress, node records, retries); the jobs themselves live in
:mod:`services.provisioner.provisioning` (requested → ready, capacity fallback),
:mod:`services.provisioner.replacement` (lost nodes) and
:mod:`services.provisioner.release` (release, teardown, autostop and the reaper).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import stamina
from sqlmodel import Session, col, select

from services.provisioner import release as releases
from services.provisioner.cloud_access import CloudAccessPolicy
from services.provisioner.drivers.base import Node, NodeDriver, RunContext
from services.provisioner.envs.builder import EnvBuilder
from services.provisioner.jobs import RunJobs
from services.provisioner.lease import RunLeases
from services.provisioner.locks import LockStore
from services.provisioner.models import NODES, Preflight, RunNodes
from services.provisioner.provisioning import no_capacity
from services.provisioner.settings import ProvisionerSettings
from shared.db import run_sync
from shared.errors import TransientError, dependency_outage
from shared.events import Envelope, EventPayload, ProvisioningProgress, new_event
from shared.runtime import ServiceRuntime
from shared.service.clock import utcnow
from shared.spec import LLM_TASKS, ProjectSpec

__all__ = ["DriverFactory", "Provisioner", "no_capacity"]

log = logging.getLogger(__name__)

#: ``factory(provider, owner_id)`` → a driver acting with that owner's credentials.
DriverFactory = Callable[[str, uuid.UUID | None], NodeDriver]


class Provisioner:
    """Runs provisioning and release jobs for the service's runtime."""

    def __init__(
        self,
        *,
        runtime: ServiceRuntime,
        settings: ProvisionerSettings,
        drivers: DriverFactory,
        builder: EnvBuilder,
        locks: LockStore,
        cloud_access: CloudAccessPolicy | None = None,
    ) -> None:
        self.runtime = runtime
        self.cloud_access = cloud_access
        self.settings = settings
        self.drivers = drivers
        self.builder = builder
        self.locks = locks
        self.leases = RunLeases(runtime.db, seconds=settings.provisioner_lease_seconds)
        self.jobs = RunJobs(self, self.leases)
        #: set to stop a run's configure (a worker thread) when its release takes over
        self._cancel: dict[uuid.UUID, threading.Event] = {}
        self._nodes_lock = threading.Lock()  # _add_node runs in worker threads (run_sync)

    # -- state -------------------------------------------------------------------------

    def transition(
        self,
        session: Session,
        row: RunNodes,
        state: str,
        *,
        event: EventPayload | None = None,
        cause: Envelope | None = None,
        **fields: Any,
    ) -> None:
        """Move ``row`` to ``state`` (with ``fields``) and stage the event announcing it;
        :class:`~shared.service.states.InvalidTransition` for a move :data:`NODES` lacks."""
        NODES.transition(row, state)
        row.updated_at = utcnow()
        for name, value in fields.items():
            setattr(row, name, value)
        session.add(row)
        if event is not None:
            self.runtime.stage(
                session,
                new_event(event, project_id=row.project_id, run_id=row.run_id, cause=cause),
            )

    def record_run(
        self,
        session: Session,
        *,
        envelope: Envelope,
        spec: dict[str, Any],
        owner_id: uuid.UUID | None,
    ) -> RunNodes | None:
        """Record a requested run (handler side). None if the run is already known."""
        if envelope.run_id is None or envelope.project_id is None:
            raise ValueError(f"{envelope.type} without run_id/project_id")
        if session.get(RunNodes, envelope.run_id) is not None:
            return None
        parsed = ProjectSpec.model_validate(spec)
        if owner_id is None:
            previous = session.exec(
                select(RunNodes).where(RunNodes.project_id == envelope.project_id)
            ).first()
            owner_id = previous.owner_id if previous else None
        row = RunNodes(
            run_id=envelope.run_id,
            project_id=envelope.project_id,
            owner_id=owner_id,
            provider=parsed.resources.provider,
            spec=spec,
            # an LLM task's data is checked before any node exists (settle_preflight)
            state="validating" if parsed.task in LLM_TASKS else "requested",
        )
        session.add(row)
        return row

    def record_preflight(
        self, session: Session, *, run_id: uuid.UUID, passed: bool, reason: str | None
    ) -> None:
        """Keep the outcome of a run's pre-flight check (handler side; first one wins)."""
        if session.get(Preflight, run_id) is None:
            session.add(Preflight(run_id=run_id, passed=passed, reason=reason))

    def settle_preflight(self, run_id: uuid.UUID) -> bool:
        """Move a ``validating`` run on once its check is known: True when it is now
        ``requested`` (the caller schedules provisioning). Called after both the run's and
        the check's handler commit, so whichever commits last settles it."""
        with self.runtime.db.session() as s:
            row = s.get(RunNodes, run_id)
            check = s.get(Preflight, run_id)
            if row is None or check is None or row.state != "validating":
                return False
            if check.passed:
                self.transition(s, row, "requested")
            else:
                self.transition(
                    s,
                    row,
                    "failed",
                    error=f"pre-flight check failed: {check.reason or ''}"[:2000],
                    failed_step="preflight",
                )
            s.commit()
            return check.passed

    def request_release(
        self, session: Session, row: RunNodes, *, reason: str, cause: Envelope | None = None
    ) -> bool:
        """Mark the run's nodes for release (handler side); False if nothing to release."""
        if row.state == "validating":  # no node was ever asked for
            self.transition(session, row, "released", release_reason=reason, cause=cause)
            return False
        if row.state not in ("requested", "provisioning", "ready", "replacing"):
            return False
        self.transition(session, row, "releasing", release_reason=reason, cause=cause)
        return True

    def run_ids_holding(self, provider: str) -> set[uuid.UUID]:
        """Runs of ``provider`` whose nodes exist, for work other than serving.

        Runs still waiting for a node hold nothing (else waiting runs would block each
        other forever), and nodes kept only for a deployment's inference server hold no
        training slot (else deployed runs would block every later run)."""
        with self.runtime.db.session() as s:
            rows = s.exec(
                select(RunNodes.run_id, RunNodes.nodes).where(
                    RunNodes.provider == provider,
                    col(RunNodes.state).in_(["provisioning", "ready", "replacing", "releasing"]),
                    col(RunNodes.serving).is_not(True),
                )
            ).all()
        return {run_id for run_id, nodes in rows if nodes}

    # -- scheduling --------------------------------------------------------------------

    def schedule(self, run_id: uuid.UUID, action: str) -> None:
        """Work on a run in a background job (:class:`~services.provisioner.jobs.RunJobs`):
        ``provision``, ``replace`` (lost nodes, :mod:`.replacement`) or ``release``, as the
        run's state asks, under its lease. ``release`` stops a provisioning or replacement
        job in flight here first; on another replica, that replica's heartbeat does."""
        self.jobs.start(run_id, action)

    async def _guard(self, job: Callable[[], Awaitable[None]]) -> None:
        """Run a job; while the database (or Vault) is down, wait and run it again (jobs
        start from the row's state, so a second run picks up where the first stopped)."""

        def outage(exc: Exception) -> bool:
            dependency = dependency_outage(exc)
            if dependency is not None:
                log.warning("provisioner job paused: the %s is unavailable (%s)", dependency, exc)
            return dependency is not None

        try:
            # No bound: a job waits out an outage however long it lasts (0.5 s, doubling to 10 s).
            async for attempt in stamina.retry_context(
                on=outage,
                attempts=None,
                timeout=None,
                wait_initial=0.5,
                wait_max=10.0,
                wait_jitter=0.0,
            ):
                with attempt:
                    await job()
        except Exception:  # a bug: logged, the row stays for resume at next start
            log.exception("provisioner job crashed")

    async def resume(self) -> None:
        """At start: take over the unfinished runs whose lease is free or expired (not
        those another live replica works on), and settle the pre-flight checks recorded
        just before a stop."""
        await self.jobs.beat()
        for run_id in await run_sync(self._validating):
            if await run_sync(self.settle_preflight, run_id):
                self.schedule(run_id, "provision")

    def _validating(self) -> list[uuid.UUID]:
        with self.runtime.db.session() as s:
            rows = s.exec(select(RunNodes.run_id).where(RunNodes.state == "validating"))
            return list(rows.all())

    async def heartbeat_forever(self) -> None:
        """Renew held leases, act on cancels other replicas recorded, take runs over."""
        await self.jobs.heartbeat_forever()

    # -- helpers -----------------------------------------------------------------------

    def _context(self, row: RunNodes) -> RunContext:
        state_dir = self.settings.controller_dir() / str(row.run_id)
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

        async def report(stage: str, message: str) -> None:
            await self._progress(row.run_id, stage, message, None)

        spec = ProjectSpec.model_validate(row.spec)
        choices = spec.resources.choices()
        return RunContext(
            run_id=row.run_id,
            project_id=row.project_id,
            owner_id=row.owner_id,
            spec=spec.narrowed(choices[min(row.choice, len(choices) - 1)]),
            state_dir=state_dir,
            progress=report,
            credential_source=row.credential_source,
        )

    async def _progress(
        self, run_id: uuid.UUID, stage: str, message: str, percent: float | None
    ) -> None:
        await run_sync(self._stage_progress, run_id, stage, message, percent)

    def _stage_progress(
        self, run_id: uuid.UUID, stage: str, message: str, percent: float | None
    ) -> None:
        with self.runtime.db.session() as s:
            row = s.get(RunNodes, run_id)
            if row is None:
                return
            event = ProvisioningProgress(stage=stage, message=message[:2000], percent=percent)
            self.runtime.stage(s, new_event(event, project_id=row.project_id, run_id=row.run_id))
            s.commit()
        self.runtime.published()

    def _update(self, run_id: uuid.UUID, **fields: Any) -> None:
        with self.runtime.db.session() as s:
            row = s.get(RunNodes, run_id)
            if row is None:
                return
            for name, value in fields.items():
                setattr(row, name, value)
            row.updated_at = utcnow()
            s.add(row)
            s.commit()

    def _add_node(self, run_id: uuid.UUID, node: Node) -> None:
        """Record ``node`` in the run's node list (a read-modify-write of one column: the
        nodes of a run, made in parallel, are recorded one at a time)."""
        with self._nodes_lock, self.runtime.db.session() as s:
            row = s.get(RunNodes, run_id)
            if row is None:
                return
            nodes = [n for n in row.nodes or [] if n.get("index") != node.index]
            row.nodes = sorted([*nodes, node.record()], key=lambda n: n["index"])
            s.add(row)
            s.commit()

    async def _retrying(self, run_id: uuid.UUID, make: Callable[[], Awaitable[Node]]) -> Node:
        """Call ``make`` until it stops raising TransientError (the driver contract).

        Each distinct wait reason is reported once, not once per try, so a long wait does
        not flood the run's event log."""
        reported: str | None = None
        while True:
            try:
                return await make()
            except TransientError as exc:
                if exc.message != reported:
                    await self._progress(run_id, "waiting", exc.message, None)
                    reported = exc.message
                await asyncio.sleep(self.settings.retry_delay)

    # -- sweeps: autostop and the reaper (services.provisioner.release) -------------------

    async def sweep(self) -> None:
        """One pass: release idle nodes (autostop), then reap leaked provider resources."""
        await releases.sweep(self)

    async def reap(self) -> list[str]:
        """Ask every billed provider to delete resources of runs that have ended."""
        return await releases.reap(self)

    async def sweep_forever(self) -> None:
        await releases.sweep_forever(self)
