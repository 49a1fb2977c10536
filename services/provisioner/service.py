"""The provisioner's jobs: a state machine per run in ``provisioner_runs``.

Handlers only record intent (a row, a state) in the same transaction as their inbox claim;
:class:`Provisioner` runs the long work in background tasks and emits events through the
outbox. Every state change goes through :meth:`Provisioner.transition`, which also stages
the event that announces it. Unfinished jobs are resumed at start (``resume``).

States: requested → provisioning → ready → releasing → released, or → failed (partial
nodes torn down first); ready → replacing → ready when the trainer lost a node
(:mod:`services.provisioner.replacement`). Release happens after TrainingFailed, after
TrainingCompleted unless
the spec deploys (the trainer serves from the node: kept until the project is deleted, the
run cancelled or the deployment fails), on RunCancelled, ProjectDeleted and autostop.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import stamina
from sqlmodel import Session, col, select

from services.provisioner.cloud_access import CloudAccessPolicy
from services.provisioner.drivers.base import Node, NodeDriver, RunContext
from services.provisioner.drivers.sshcmd import detect_run_user
from services.provisioner.envs.builder import EnvBuilder
from services.provisioner.locks import LockStore
from services.provisioner.models import ACTIVE_STATES, NODES, Preflight, RunNodes
from services.provisioner.replacement import replace_lost
from services.provisioner.settings import ProvisionerSettings
from shared.db import run_sync
from shared.errors import AidpError, ProviderError, TransientError, dependency_outage
from shared.events import (
    Envelope,
    EnvInfo,
    EventPayload,
    NodesFailed,
    NodesReady,
    NodesReleased,
    ProvisioningProgress,
    new_event,
)
from shared.runtime import ServiceRuntime
from shared.service.clock import utcnow
from shared.spec import LLM_TASKS, Choice, ProjectSpec

__all__ = ["DriverFactory", "Provisioner", "no_capacity"]

log = logging.getLogger(__name__)

#: ``factory(provider, owner_id)`` → a driver acting with that owner's credentials.
DriverFactory = Callable[[str, uuid.UUID | None], NodeDriver]


#: ProviderError codes that mean "not here, not now": the next choice is tried.
CAPACITY_CODES = frozenset({"no_capacity", "quota_exceeded"})
# states whose job a restart resumes
_UNFINISHED = ("requested", "provisioning", "replacing", "releasing")


def no_capacity(exc: BaseException) -> bool:
    """True when ``exc`` says the provider lacks capacity (or a quota is hit) for the
    requested instance type: a reason to try the spec's next choice, not to fail."""
    if not isinstance(exc, ProviderError):
        return False
    if exc.code in CAPACITY_CODES:
        return True
    return exc.code == "instance_failed" and "capacity" in exc.message.lower()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


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
        self._jobs: dict[uuid.UUID, asyncio.Task[Any]] = {}
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
        """Start ``provision``, ``replace`` (lost nodes, :mod:`.replacement`) or ``release``
        for a run in a background task."""
        if action in ("provision", "replace"):
            if run_id in self._jobs and not self._jobs[run_id].done():
                return
            self._cancel[run_id] = threading.Event()
            if action == "provision":
                job: Callable[[], Awaitable[None]] = lambda: self._provision(run_id)  # noqa: E731
            else:
                job = lambda: replace_lost(self, run_id)  # noqa: E731
            task = self.runtime.spawn(self._guard(job), name=f"{action}-{run_id}")
            self._jobs[run_id] = task
        else:
            self.runtime.spawn(self._guard(lambda: self._release(run_id)), name=f"release-{run_id}")

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
        """Restart unfinished jobs (called at start)."""
        jobs = {"releasing": "release", "replacing": "replace"}
        for run_id, state in await run_sync(self._runs_in, _UNFINISHED):
            self.schedule(run_id, jobs.get(state, "provision"))
        for run_id, _state in await run_sync(self._runs_in, ("validating",)):
            # a check recorded just before a stop
            if await run_sync(self.settle_preflight, run_id):
                self.schedule(run_id, "provision")

    def _runs_in(self, states: tuple[str, ...]) -> list[tuple[uuid.UUID, str]]:
        """``(run_id, state)`` of every run in one of ``states``."""
        with self.runtime.db.session() as s:
            rows = s.exec(
                select(RunNodes.run_id, RunNodes.state).where(col(RunNodes.state).in_(states))
            ).all()
        return [(run_id, state) for run_id, state in rows]

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

    # -- provision ---------------------------------------------------------------------

    async def _provision(self, run_id: uuid.UUID) -> None:
        started = await run_sync(self._start_provisioning, run_id)
        if started is None:
            return
        ctx, provider, owner, index, choices = started
        driver = self.drivers(provider, owner)
        step = "check"
        try:
            await self._check_choices(ctx, choices[index:], owner)
            ctx = await run_sync(self._reserve, ctx, driver, owner)
            step = "lock"
            await self._progress(run_id, "lock", "resolving the environment's packages", 2)
            lock = await run_sync(self.locks.load, self.builder.input_key(ctx.spec))
            if lock is None:
                await run_sync(self.locks.save, await self.builder.resolve(ctx.spec))
                lock = await run_sync(self.locks.load, self.builder.input_key(ctx.spec))
            if lock is None:
                raise RuntimeError("the lock just stored is missing")
            await run_sync(self._update, run_id, lock_hash=lock.lock_hash, lock=lock.text)
            step = "nodes"
            while True:
                try:
                    nodes = await self._create_nodes(ctx, driver)
                    break
                except ProviderError as exc:
                    if not no_capacity(exc) or index + 1 >= len(choices):
                        raise
                    ctx, driver = await self._fall_back(ctx, driver, choices, index, exc)
                    index += 1
                    ctx = await run_sync(self._reserve, ctx, driver, owner)  # its price
            step = "configure"
            env = await self.builder.configure(
                spec=ctx.spec,
                lock=lock,
                nodes=nodes,
                driver=driver,
                private_dir=ctx.state_dir / "configure",
                progress=lambda stage, message, pct: self._progress(run_id, stage, message, pct),
                cancel=self._cancel.setdefault(run_id, threading.Event()),
            )
            if driver.capabilities.remote:  # node_base made a run user where it could
                users = await asyncio.gather(*(detect_run_user(driver, n) for n in nodes))
                nodes = [
                    replace(n, extra={**n.extra, "run_user": u})
                    for n, u in zip(nodes, users, strict=True)
                ]
        except asyncio.CancelledError:
            raise  # a release took over; it tears the nodes down
        except Exception as exc:
            if dependency_outage(exc) is not None:
                raise  # not the run's failure: the guard runs the job again once it is back
            await self._fail(ctx, driver, step=step, exc=exc)
            return
        await run_sync(self._ready, run_id, nodes, env)

    def _start_provisioning(
        self, run_id: uuid.UUID
    ) -> tuple[RunContext, str, uuid.UUID | None, int, list[Choice]] | None:
        """Move the run to ``provisioning`` (one more attempt): its context, provider,
        owner, current choice and choices; None when it is not to be provisioned."""
        with self.runtime.db.session() as s:
            row = s.get(RunNodes, run_id)
            if row is None or row.state not in ("requested", "provisioning"):
                return None
            self.transition(s, row, "provisioning", attempts=row.attempts + 1)
            s.commit()
            s.refresh(row)
            choices = ProjectSpec.model_validate(row.spec).resources.choices()
            return self._context(row), row.provider, row.owner_id, row.choice, choices

    async def _check_choices(
        self, ctx: RunContext, choices: list[Choice], owner: uuid.UUID | None
    ) -> None:
        """Every choice left must pass its driver's check (accelerator, credentials, price
        caps, allow-list) before anything is created: a fallback is never a way around a
        limit."""
        full = ProjectSpec.model_validate(await run_sync(self._row_spec, ctx.run_id))
        for choice in choices:
            narrowed = replace(ctx, spec=full.narrowed(choice))
            try:
                await self.drivers(choice.provider, owner).check_request(narrowed)
            except ProviderError as exc:
                if len(choices) == 1:
                    raise
                raise ProviderError(
                    f"{choice.label()}: {exc.message}", code=exc.code, retryable=exc.retryable
                ) from exc

    def _row_spec(self, run_id: uuid.UUID) -> dict[str, Any]:
        with self.runtime.db.session() as s:
            row = s.get(RunNodes, run_id)
            return dict(row.spec) if row is not None else {}

    def _reserve(self, ctx: RunContext, driver: NodeDriver, owner: uuid.UUID | None) -> RunContext:
        """Record the choice's price and account (the per-user cap is checked here)."""
        billing = driver.billing(ctx)
        if billing is not None and self.cloud_access is not None:
            self.cloud_access.reserve(ctx.run_id, owner, billing)
            return replace(ctx, credential_source=billing.source)
        return ctx

    async def _create_nodes(self, ctx: RunContext, driver: NodeDriver) -> list[Node]:
        """Create and check every node of the run (in parallel); the first error raises
        once all have ended (what was created is recorded for the teardown)."""
        run_id, count = ctx.run_id, ctx.spec.resources.nodes
        where = ctx.spec.resources.instance_type or driver.name
        message = f"creating {count} {driver.name} node(s)"
        if where != driver.name:
            message += f" ({where})"
        await self._progress(run_id, "nodes", message, 5)

        async def one(index: int) -> Node:
            node = await self._retrying(run_id, lambda: driver.create_node(ctx, index))
            await run_sync(self._add_node, run_id, node)
            node = await driver.check_node(ctx, node)
            await run_sync(self._add_node, run_id, node)
            return node

        results = await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        return [r for r in results if isinstance(r, Node)]

    async def _fall_back(
        self,
        ctx: RunContext,
        driver: NodeDriver,
        choices: list[Choice],
        index: int,
        exc: ProviderError,
    ) -> tuple[RunContext, NodeDriver]:
        """Give back what choice ``index`` created and move the run to the next choice,
        saying why (ProvisioningProgress stage ``fallback``)."""
        here, there = choices[index], choices[index + 1]
        await self._progress(
            ctx.run_id,
            "fallback",
            f"{here.label()} has no capacity ({exc.message}); trying {there.label()}",
            None,
        )
        await self._teardown(ctx, driver, keep_state=True)
        fresh = await run_sync(self._next_choice, ctx.run_id, index + 1, there)
        if fresh is None:
            raise asyncio.CancelledError  # released meanwhile
        return fresh, self.drivers(there.provider, fresh.owner_id)

    def _next_choice(self, run_id: uuid.UUID, index: int, choice: Choice) -> RunContext | None:
        """Point a provisioning run at choice ``index``; None if it was released meanwhile."""
        with self.runtime.db.session() as s:
            row = s.get(RunNodes, run_id, with_for_update=True)
            if row is None or row.state != "provisioning":
                return None
            row.choice, row.provider, row.nodes = index, choice.provider, []
            row.credential_source, row.hourly_usd = None, None
            row.updated_at = utcnow()
            s.add(row)
            s.commit()
            s.refresh(row)
            return self._context(row)

    def _ready(self, run_id: uuid.UUID, nodes: list[Node], env: dict[str, Any]) -> None:
        infos = [
            node.info(python=env["python"]).model_copy(
                update={"run_user": node.extra.get("run_user")}
            )
            for node in nodes
        ]
        payload = NodesReady(
            nodes=infos,
            env=EnvInfo(
                lock_hash=env["lock_hash"],
                python=env["python"],
                torch_version=env["torch_version"],
                accelerator=env["accelerator"],
                framework=env.get("framework") or "pytorch",
                tensorflow_version=env.get("tensorflow_version") or "",
                keras_version=env.get("keras_version") or "",
            ),
        )
        with self.runtime.db.session() as s:
            row = s.get(RunNodes, run_id, with_for_update=True)
            if row is None or row.state != "provisioning":
                return  # released meanwhile: the release job owns the nodes now
            self.transition(
                s,
                row,
                "ready",
                event=payload,
                env=env,
                nodes=[n.record() for n in nodes],
                last_active_at=utcnow(),
            )
            s.commit()
        self.runtime.published()

    async def _fail(
        self, ctx: RunContext, driver: NodeDriver, *, step: str, exc: Exception
    ) -> None:
        if isinstance(exc, AidpError):
            reason, retryable = exc.message, exc.retryable
        else:
            log.exception("provisioning %s failed unexpectedly", ctx.run_id)
            reason, retryable = f"{type(exc).__name__}: {exc}", False
        await self._progress(ctx.run_id, "teardown", f"{step} failed; removing nodes", None)
        await self._teardown(ctx, driver)
        await run_sync(self._record_failure, ctx.run_id, reason, retryable, step)

    def _record_failure(self, run_id: uuid.UUID, reason: str, retryable: bool, step: str) -> None:
        with self.runtime.db.session() as s:
            row = s.get(RunNodes, run_id, with_for_update=True)
            if row is None:
                return
            event = NodesFailed(reason=reason, retryable=retryable, step=step)
            self.transition(s, row, "failed", event=event, error=reason, failed_step=step)
            s.commit()
        self.runtime.published()

    async def _teardown(
        self, ctx: RunContext, driver: NodeDriver, *, keep_state: bool = False
    ) -> list[str]:
        """Terminate every recorded node and the run's provider resources; never raises.
        ``keep_state``: the run goes on (another choice): its private state dir stays."""
        records = await run_sync(self._node_records, ctx.run_id)
        names: list[str] = []
        for record in records:
            node = Node.from_record(record)
            try:
                await driver.terminate_node(ctx, node)
                names.append(node.name)
            except Exception as exc:  # keep going: the reaper catches what is left
                log.warning("terminating %s failed: %s", node.name, exc)
        try:
            await driver.release_run(ctx)
        except Exception as exc:
            log.warning("releasing run %s resources failed: %s", ctx.run_id, exc)
        if not keep_state:
            self._cancel.pop(ctx.run_id, None)
            shutil.rmtree(ctx.state_dir, ignore_errors=True)
        return names

    def _node_records(self, run_id: uuid.UUID) -> list[dict[str, Any]]:
        with self.runtime.db.session() as s:
            row = s.get(RunNodes, run_id)
            return list(row.nodes or []) if row else []

    # -- release -----------------------------------------------------------------------

    async def _release(self, run_id: uuid.UUID) -> None:
        cancel = self._cancel.get(run_id)
        if cancel is not None:
            cancel.set()
        job = self._jobs.pop(run_id, None)
        if job is not None and not job.done():
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)
        releasing = await run_sync(self._releasing, run_id)
        if releasing is None:
            return
        ctx, provider, owner = releasing
        driver = self.drivers(provider, owner)
        names = await self._teardown(ctx, driver)
        await run_sync(self._released, run_id, names)

    def _releasing(self, run_id: uuid.UUID) -> tuple[RunContext, str, uuid.UUID | None] | None:
        """A releasing run's context, provider and owner (None: not releasing)."""
        with self.runtime.db.session() as s:
            row = s.get(RunNodes, run_id)
            if row is None or row.state != "releasing":
                return None
            return self._context(row), row.provider, row.owner_id

    def _released(self, run_id: uuid.UUID, names: list[str]) -> None:
        with self.runtime.db.session() as s:
            row = s.get(RunNodes, run_id, with_for_update=True)
            if row is None or row.state != "releasing":
                return
            self.transition(s, row, "released", event=NodesReleased(nodes=names))
            s.commit()
        self.runtime.published()

    # -- sweeps: autostop and the reaper ---------------------------------------------------

    async def sweep(self) -> None:
        """One pass: release idle nodes (autostop), then reap leaked provider resources."""
        for run_id in await run_sync(self._release_idle):
            await self._progress(run_id, "autostop", "nodes idle: releasing them", None)
            self.schedule(run_id, "release")
        await self.reap()

    def _release_idle(self) -> list[uuid.UUID]:
        """Mark the ready runs idle past their autostop for release; their ids."""
        now = utcnow()
        idle: list[uuid.UUID] = []
        with self.runtime.db.session() as s:
            ready = s.exec(select(RunNodes).where(RunNodes.state == "ready")).all()
            for row in ready:
                minutes = ProjectSpec.model_validate(row.spec).resources.autostop_minutes
                quiet = now - _aware(row.last_active_at) > timedelta(minutes=minutes)
                if not row.training and not row.serving and quiet:
                    self.request_release(s, row, reason="autostop")
                    idle.append(row.run_id)
            s.commit()
        return idle

    async def reap(self) -> list[str]:
        """Ask every billed provider to delete resources of runs that have ended."""
        active, owners = await run_sync(self._reap_scope)
        removed: list[str] = []
        for owner in {None, *owners}:
            try:
                driver = self.drivers("idc", owner)
                removed += await driver.reap(active_run_ids=active)
            except ProviderError as exc:
                log.debug("reaper skipped owner %s: %s", owner, exc.message)
            except Exception as exc:
                log.warning("reaper pass failed for owner %s: %s", owner, exc)
        return removed

    def _reap_scope(self) -> tuple[set[uuid.UUID], set[uuid.UUID | None]]:
        """The active runs, and the owners of billed (idc) runs."""
        with self.runtime.db.session() as s:
            active = set(
                s.exec(
                    select(RunNodes.run_id).where(col(RunNodes.state).in_(sorted(ACTIVE_STATES)))
                ).all()
            )
            owners = set(s.exec(select(RunNodes.owner_id).where(RunNodes.provider == "idc")).all())
        return active, owners

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reaper_interval)
            try:
                await self.sweep()
            except Exception:
                log.exception("provisioner sweep failed")
