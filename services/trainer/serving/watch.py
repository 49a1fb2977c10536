"""The lifecycle of each live deployment's servers, run by the holder of its watch lease.

``starting``/``waking`` → start the servers → ``running`` (:meth:`DeploymentChanges.mark_running`;
a deployment to promote becomes live and stops the ones it supersedes) → watch: every
``trainer_health_seconds`` a health check; ``trainer_health_failures`` failures in a row
restart the servers (at most ``trainer_serving_restarts`` times, then ``failed``); no
request for ``idle_timeout_s`` → ``idle`` (scale to zero: the servers are killed, the model
stays staged). A ``running`` deployment found by a new holder (a restart, another replica)
is adopted when healthy. The supervisor starts a watcher for every live deployment whose
lease is free or expired.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

from services.trainer.models import Deployment, ModelVersion
from services.trainer.serving.changes import DeploymentChanges
from services.trainer.serving.lease import DeploymentLeases
from services.trainer.serving.records import DeploymentRecords
from services.trainer.serving.servers import Servers
from services.trainer.serving.traffic import Traffic
from services.trainer.serving.views import LIVE
from services.trainer.settings import TrainerSettings
from shared.db import run_sync
from shared.runtime import ServiceRuntime

__all__ = ["Watchers"]

log = logging.getLogger(__name__)

#: Stops a deployment (the manager's ``stop``): for the ones a promotion supersedes.
StopDeployment = Callable[..., Awaitable[object]]


class Watchers:
    """One watcher task per deployment this instance holds the lease of."""

    def __init__(
        self,
        runtime: ServiceRuntime,
        settings: TrainerSettings,
        *,
        records: DeploymentRecords,
        changes: DeploymentChanges,
        leases: DeploymentLeases,
        servers: Servers,
        traffic: Traffic,
        stop: StopDeployment,
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self.records = records
        self.changes = changes
        self.leases = leases
        self.servers = servers
        self.traffic = traffic
        self.stop = stop
        self.tasks: dict[uuid.UUID, asyncio.Task[None]] = {}

    def start(self, deployment_id: uuid.UUID) -> None:
        """Start (or restart) the server in the background, if this replica gets the lease."""
        old = self.tasks.pop(deployment_id, None)
        if old is not None:
            old.cancel()
        self.tasks[deployment_id] = self.runtime.spawn(
            self._leased(deployment_id), name=f"deployment-{deployment_id}"
        )

    async def resume_all(self) -> None:
        """One pass of :meth:`supervise`: take over deployments nobody watches."""
        for dep_id in await run_sync(self.leases.unwatched):
            if dep_id not in self.tasks:
                self.start(dep_id)

    async def supervise(self) -> None:
        """Until cancelled: adopt deployments whose watcher lease expired (a replica died)."""
        while True:
            try:
                await self.resume_all()
            except Exception:
                log.exception("deployment supervisor pass failed")
            await asyncio.sleep(self.settings.trainer_lease_seconds / 2)

    async def _leased(self, dep_id: uuid.UUID) -> None:
        """Run the deployment's lifecycle while holding its lease; stop if the lease is lost
        (another replica took over: it restarts or adopts the server, never both)."""
        if not await run_sync(self.leases.claim, dep_id):
            self.tasks.pop(dep_id, None)
            return
        worker = asyncio.ensure_future(self._run(dep_id))
        try:
            while True:
                done, _ = await asyncio.wait(
                    {worker}, timeout=self.settings.trainer_lease_seconds / 3
                )
                if done:
                    break
                if not await run_sync(self.leases.claim, dep_id):
                    log.warning("deployment %s: watch lease lost to another replica", dep_id)
                    worker.cancel()
                    break
            await asyncio.gather(worker, return_exceptions=True)
        finally:
            if not worker.done():
                worker.cancel()
            await asyncio.shield(run_sync(self.leases.release, dep_id))
            if self.tasks.get(dep_id) is asyncio.current_task():
                self.tasks.pop(dep_id, None)

    async def _run(self, dep_id: uuid.UUID) -> None:
        try:
            dep, model = await run_sync(self.records.load, dep_id)
            if dep.status == "running":  # adopted: after a restart or from another replica
                if await self.servers.healthy(dep):
                    self.traffic.used_now(dep_id, only_if_unknown=True)
                    outcome = await self._watch(dep_id)
                    if outcome != "unhealthy":
                        if outcome == "idle":
                            await self._scale_to_zero(dep_id)
                        return
                if not await run_sync(
                    self.changes.count_restart, dep_id, "inference server stopped answering"
                ):
                    return
            while True:
                dep, model = await run_sync(self.records.load, dep_id)
                if dep.status not in LIVE:
                    return
                try:
                    await self._start_server(dep, model)
                except Exception as exc:
                    log.warning("deployment %s failed to start: %s", dep_id, exc)
                    if not await run_sync(self.changes.count_restart, dep_id, str(exc)):
                        return
                    continue
                outcome = await self._watch(dep_id)
                if outcome == "idle":
                    await self._scale_to_zero(dep_id)
                    return
                if outcome == "gone" or not await run_sync(
                    self.changes.count_restart, dep_id, "inference server stopped answering"
                ):
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("deployment %s crashed", dep_id)
            await run_sync(self.changes.fail, dep_id, f"deployment error: {exc}")

    async def _start_server(self, dep: Deployment, model: ModelVersion) -> None:
        """Start the servers; mark the deployment running (and stop what it supersedes)."""
        await self.servers.start(dep, model)
        self.traffic.used_now(dep.id)
        superseded = await run_sync(self.changes.mark_running, dep.id, str(model.id))
        await self.stop_superseded(superseded)

    async def stop_superseded(self, dep_ids: list[uuid.UUID]) -> None:
        for other in dep_ids:
            try:
                await self.stop(other, reason="superseded")
            except Exception:
                log.exception("could not stop superseded deployment %s", other)

    async def _watch(self, dep_id: uuid.UUID) -> str:
        """Return ``unhealthy`` when the server failed ``trainer_health_failures`` checks in
        a row, ``gone`` when the deployment stopped running, ``idle`` when it has had no
        request for its ``idle_timeout_s``."""
        failures = 0
        while failures < self.settings.trainer_health_failures:
            await asyncio.sleep(self.settings.trainer_health_seconds)
            dep, _ = await run_sync(self.records.load, dep_id)
            if dep.status != "running":
                return "gone"
            if self.traffic.idle_for(dep) is not None:
                return "idle"
            failures = 0 if await self.servers.healthy(dep) else failures + 1
        return "unhealthy"

    async def _scale_to_zero(self, dep_id: uuid.UUID) -> None:
        """Stop the servers of an idle deployment; it stays ``idle`` until a request comes."""
        dep, _ = await run_sync(self.records.load, dep_id)
        reason = f"scaled to zero after {dep.idle_timeout_s}s without a request"
        if not await run_sync(self.changes.scale_to_zero, dep_id, reason):
            return
        executor = await self.servers.executor(dep)
        try:
            await self.servers.kill(dep, executor)
        finally:
            await self.servers.endpoints.forget(dep_id)
            await run_sync(self.records.update, dep_id, pid=None, port=None, procs=None)
        log.info("deployment %s: %s", dep_id, reason)
