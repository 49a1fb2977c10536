"""The jobs of one provisioner replica: at most one per run, and only under the run's lease.

A run's job (:meth:`RunJobs.start`) first claims the run's lease (:mod:`.lease`); when a live
replica holds it the job ends at once and leaves the run to that replica. Holding it, the job
runs the step the run's state asks for — ``requested``/``provisioning``:
:func:`~services.provisioner.provisioning.provision`, ``replacing``:
:func:`~services.provisioner.replacement.replace_lost`, ``releasing``:
:func:`~services.provisioner.release.release` — reads the state again and goes on until the
run is at rest (``ready``, ``released``, ``failed``, ``validating``), then gives the lease up.

:meth:`RunJobs.beat` is the replica's heartbeat, every third of the lease: it renews the
leases of the runs it works on, stops the provisioning or replacement step of a run that
another replica marked ``releasing`` (a cancel delivered there: the state in the row *is*
the cancellation, and this replica, the holder, then releases the nodes), drops the runs
whose lease was lost, and takes over every unfinished run whose lease is free or expired
(a replica that died). Start-up (:meth:`Provisioner.resume`) is its first pass, so a
starting replica resumes only the runs it can claim.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from services.provisioner import release as releases
from services.provisioner.lease import RunLeases
from services.provisioner.models import RunNodes
from services.provisioner.provisioning import provision
from services.provisioner.replacement import replace_lost
from shared.db import run_sync
from shared.errors import dependency_outage

if TYPE_CHECKING:
    from services.provisioner.service import Provisioner

__all__ = ["RunJobs"]

log = logging.getLogger(__name__)

Step = Callable[["Provisioner", uuid.UUID], Awaitable[None]]

#: the step each unfinished state asks for
STEPS: dict[str, tuple[str, Step]] = {
    "requested": ("provision", provision),
    "provisioning": ("provision", provision),
    "replacing": ("replace", replace_lost),
    "releasing": ("release", releases.release),
}


class RunJobs:
    """The run jobs, steps and lease heartbeat of one replica."""

    def __init__(self, prov: Provisioner, leases: RunLeases) -> None:
        self.prov = prov
        self.leases = leases
        self.jobs: dict[uuid.UUID, asyncio.Task[None]] = {}
        self.steps: dict[uuid.UUID, tuple[str, asyncio.Task[None]]] = {}
        #: asked for while its job runs: the job reads the state again before it ends
        self.wanted: set[uuid.UUID] = set()
        #: runs whose lease this replica holds (renewed by :meth:`beat`)
        self.held: set[uuid.UUID] = set()
        #: runs whose job crashed (a bug): not taken over here again; their lease expires
        self.given_up: set[uuid.UUID] = set()

    def start(self, run_id: uuid.UUID, action: str) -> None:
        """Work on a run: its job starts unless one runs here already (which then reads the
        run's new state). ``release`` first stops the run's provisioning or replacement
        step here: the release takes the nodes over."""
        if action == "release":
            self.stop_step(run_id)
        job = self.jobs.get(run_id)
        if job is not None and not job.done():
            self.wanted.add(run_id)
            return
        self.wanted.discard(run_id)
        self.given_up.discard(run_id)
        self.jobs[run_id] = self.prov.runtime.spawn(self._job(run_id), name=f"run-{run_id}")

    def stop_step(self, run_id: uuid.UUID) -> None:
        """Stop the run's provisioning or replacement step (never a release) on this
        replica; the job then releases the nodes."""
        cancel = self.prov._cancel.get(run_id)
        if cancel is not None:
            cancel.set()  # a configure in a worker thread stops too
        action, task = self.steps.get(run_id, ("", None))
        if task is not None and action != "release" and not task.done():
            task.cancel()

    # -- one run's job -------------------------------------------------------------------

    async def _job(self, run_id: uuid.UUID) -> None:
        try:
            await self.prov._guard(lambda: self._work(run_id))
        finally:
            if self.jobs.get(run_id) is asyncio.current_task():
                del self.jobs[run_id]
        if run_id in self.wanted and run_id not in self.given_up:
            self.start(run_id, "again")  # asked for while this job was ending

    async def _work(self, run_id: uuid.UUID) -> None:
        """Claim the lease, run steps until the run is at rest, give the lease up."""
        if not await run_sync(self.leases.claim, run_id):
            return  # a live replica holds it; its heartbeat sees what changed
        self.held.add(run_id)
        try:
            at_rest = await self._steps(run_id)
        except asyncio.CancelledError:  # stopping (another replica goes on at once), or lost
            await asyncio.shield(self._let_go(run_id))
            raise
        except Exception as exc:
            if dependency_outage(exc) is None:  # a bug, logged by the guard
                self._give_up(run_id)
            raise  # an outage: the guard runs the job again, the lease still renewed
        if at_rest:
            await self._let_go(run_id)
        else:
            self._give_up(run_id)

    def _give_up(self, run_id: uuid.UUID) -> None:
        """Stop renewing the run's lease and leave it alone here: once the lease expires
        another replica (or this one's next start) tries again."""
        self.held.discard(run_id)
        self.given_up.add(run_id)

    async def _steps(self, run_id: uuid.UUID) -> bool:
        """Run the steps the run's state asks for; False when a step left the state as it
        was (it would be asked for again and again)."""
        while True:
            self.wanted.discard(run_id)
            state = await run_sync(self._state, run_id)
            if state not in STEPS:
                return True
            action, step = STEPS[state]
            await self._step(run_id, action, step)
            if await run_sync(self._state, run_id) == state and run_id not in self.wanted:
                log.warning("run %s: the %s step left it %s; giving it up", run_id, action, state)
                return False

    async def _step(self, run_id: uuid.UUID, action: str, step: Step) -> None:
        if action != "release":
            self.prov._cancel[run_id] = threading.Event()
        task = asyncio.ensure_future(step(self.prov, run_id))
        self.steps[run_id] = (action, task)
        try:
            (outcome,) = await asyncio.gather(task, return_exceptions=True)
        finally:
            self.steps.pop(run_id, None)
        if isinstance(outcome, Exception):  # a stopped step (CancelledError) just ends
            raise outcome

    def _state(self, run_id: uuid.UUID) -> str | None:
        with self.prov.runtime.db.session() as s:
            row = s.get(RunNodes, run_id)
            return None if row is None else row.state

    async def _let_go(self, run_id: uuid.UUID) -> None:
        self.held.discard(run_id)
        try:
            await run_sync(self.leases.release, run_id)
        except Exception as exc:  # the database is gone: the lease expires instead
            log.warning("releasing the lease of run %s failed: %s", run_id, exc)

    # -- the heartbeat ---------------------------------------------------------------------

    async def beat(self) -> None:
        """Renew the leases of this replica's jobs, act on what other replicas recorded,
        take unfinished runs with a free or expired lease over."""
        for run_id in list(self.held):
            state = await run_sync(self.leases.renew, run_id)
            if state is None and run_id in self.held:  # stolen after expiry: stop acting
                log.warning("run %s: lease lost; another replica took it over", run_id)
                self.held.discard(run_id)
                self.stop_step(run_id)
                job = self.jobs.get(run_id)
                if job is not None:
                    job.cancel()
            elif state == "releasing":  # a cancel that another replica recorded
                self.stop_step(run_id)
        skip = {*self.jobs, *self.given_up}
        for run_id in await run_sync(self.leases.claim_unfinished, skip):
            self.start(run_id, "resume")

    async def heartbeat_forever(self) -> None:
        """:meth:`beat` every third of the lease; a failed beat (database down) is logged
        and the next one tries again."""
        while True:
            await asyncio.sleep(self.leases.interval)
            try:
                await self.beat()
            except Exception as exc:
                log.warning("provisioner lease heartbeat failed: %s", exc)
