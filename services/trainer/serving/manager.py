"""Deployments: an inference server per deployed model version, on a node.

Lifecycle (issue 16): ``starting → running``; ``running → idle`` after ``idle_timeout_s``
without a request (scale to zero: the servers stop, the model stays staged); ``idle →
waking → running`` on the next request (a cold start: the request waits, bounded by
``trainer_cold_start_timeout``); ``stop`` → ``stopped`` (``DeploymentStopped``); ``start``
→ ``starting`` again; ``failed`` past the restart budget. ``replicas`` server processes
serve one deployment, requests go round-robin. A deployment created with
``promote_on_ready`` becomes the project's live alias (:mod:`services.trainer.serving.live`) once
running and then stops the project's other deployments, unless ``keep_previous``.
In embedded mode (``aidp up``) the servers stop with the trainer and the deployments that
were serving start again at its next start.

The parts: :mod:`.lease` (which replica watches a deployment), :mod:`.watch` (the
lifecycle the lease holder runs), :mod:`.servers` (the processes), :mod:`.traffic`
(round-robin, idleness), :mod:`.records` and :mod:`.changes` (the rows and their events).
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import uuid
from typing import Any

import httpx

from services.trainer.models import Deployment
from services.trainer.serving.changes import DeploymentChanges
from services.trainer.serving.lease import DeploymentLeases
from services.trainer.serving.records import DeploymentRecords
from services.trainer.serving.servers import Servers, server_procs
from services.trainer.serving.traffic import Traffic
from services.trainer.serving.views import WAITS, Forwarded
from services.trainer.serving.watch import Watchers
from services.trainer.settings import TrainerSettings
from shared.db import run_sync
from shared.errors import Conflict, InvalidInput, ProviderError, TransientError
from shared.runtime import ServiceRuntime
from shared.store import ArtifactStore

__all__ = ["DeploymentManager"]

log = logging.getLogger(__name__)


class DeploymentManager:
    """Starts, watches, forwards to and stops this trainer's inference servers."""

    def __init__(
        self, runtime: ServiceRuntime, settings: TrainerSettings, store: ArtifactStore
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self.store = store
        self.instance = uuid.uuid4().hex
        self.records = DeploymentRecords(runtime, settings)
        self.changes = DeploymentChanges(runtime, settings, self.records)
        self.leases = DeploymentLeases(runtime.db, settings, self.instance)
        self.servers = Servers(settings, store, self.records)
        self.traffic = Traffic()
        self.watchers = Watchers(
            runtime,
            settings,
            records=self.records,
            changes=self.changes,
            leases=self.leases,
            servers=self.servers,
            traffic=self.traffic,
            stop=self.stop,
        )

    # -- creating, watching --------------------------------------------------------------

    def create(
        self,
        *,
        model_id: uuid.UUID,
        replicas: int = 1,
        idle_timeout_s: int | None = None,
        keep_previous: bool = False,
        promote: bool = True,
    ) -> Deployment:
        """A new deployment of a model (route deploy): on its run's first node while that
        node is held, else on the trainer's machine. The caller then calls :meth:`start`.
        ``promote``: it becomes the project's live alias once running."""
        return self.records.create(
            model_id=model_id,
            replicas=replicas,
            idle_timeout_s=idle_timeout_s,
            keep_previous=keep_previous,
            promote=promote,
        )

    def start(self, deployment_id: uuid.UUID) -> None:
        """Start (or restart) the server in the background, if this replica gets the lease."""
        self.watchers.start(deployment_id)

    def start_unwatched(self, deployment_id: uuid.UUID) -> bool:
        """:meth:`start` unless this instance already watches the deployment (a duplicate
        request to start it must not restart its servers). True when a watcher started."""
        if deployment_id in self.watchers.tasks:
            return False
        self.watchers.start(deployment_id)
        return True

    async def resume_all(self) -> None:
        """One pass of :meth:`supervise`: take over deployments nobody watches."""
        await self.watchers.resume_all()

    async def supervise(self) -> None:
        """Until cancelled: adopt deployments whose watcher lease expired (a replica died)."""
        await self.watchers.supervise()

    # -- API operations ------------------------------------------------------------------

    def get(self, dep_id: uuid.UUID) -> Deployment:
        return self.records.get(dep_id)

    def view(self, dep_id: uuid.UUID) -> dict[str, Any]:
        """The API view of one deployment (its model version, whether it is live)."""
        return self.records.view(dep_id)

    def list_views(self, project_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
        """The deployments of these projects, newest first."""
        return self.records.list_views(project_ids)

    def endpoint_view(self, project_id: uuid.UUID) -> dict[str, Any]:
        """The project's live alias: the live deployment, the one roll back returns to."""
        return self.records.endpoint_view(project_id)

    async def forward(
        self,
        dep_id: uuid.UUID,
        method: str,
        path: str,
        *,
        json: object = None,
        timeout: float | None = None,
        content: bytes | None = None,
        stream: bool = False,
    ) -> Forwarded:
        """Send one request to a replica of the deployment (round-robin). An idle
        deployment is started first and a starting one awaited, at most
        ``trainer_cold_start_timeout`` (the answer says it was cold); otherwise 409 when it
        is not running. httpx errors of the server propagate. ``content``: a JSON body sent
        as it is; ``stream``: the answer comes unread (the caller closes it)."""
        dep = await asyncio.to_thread(self.get, dep_id)
        cold = False
        if dep.status in WAITS:
            cold = True
            if dep.status == "idle":
                await self.resume(dep_id)
            dep = await self._wait_running(dep_id)
        procs = server_procs(dep)
        if dep.status != "running" or not procs:
            raise Conflict(f"deployment {dep_id} is {dep.status}, not running")
        replica, touch = self.traffic.request(dep_id, len(procs))
        if touch:
            await run_sync(self.records.touch, dep_id)
        response = await self.servers.call(
            dep,
            method,
            path,
            json=json,
            timeout=timeout,
            replica=replica,
            content=content,
            stream=stream,
        )
        return Forwarded(response, replica=replica, cold=cold)

    async def _wait_running(self, dep_id: uuid.UUID) -> Deployment:
        limit = self.settings.trainer_cold_start_timeout
        deadline = asyncio.get_running_loop().time() + limit
        while True:
            dep = await asyncio.to_thread(self.get, dep_id)
            if dep.status == "running" or dep.status not in (*WAITS, "restarting"):
                return dep
            if asyncio.get_running_loop().time() > deadline:
                raise TransientError(
                    f"deployment {dep_id} did not start within {limit:.0f}s (cold start); try again"
                )
            await asyncio.sleep(0.2)

    async def predict_forwarded(
        self, dep_id: uuid.UUID, body: dict[str, Any]
    ) -> tuple[dict[str, Any], Forwarded]:
        """Forward ``body`` to a replica's ``/predict``; its answer and how it was reached."""
        try:
            sent = await self.forward(dep_id, "POST", "/predict", json=body)
        except httpx.HTTPError as exc:
            raise ProviderError(f"inference server unreachable: {exc}", retryable=True) from exc
        response = sent.response
        if response.status_code == 400:
            raise InvalidInput(response.json().get("error", "invalid input"))
        if response.status_code != 200:
            raise ProviderError(f"inference server answered {response.status_code}", retryable=True)
        return dict(response.json()), sent

    async def predict(self, dep_id: uuid.UUID, body: dict[str, Any]) -> dict[str, Any]:
        """Forward ``body`` to the server's ``/predict``; its answer is returned as is."""
        return (await self.predict_forwarded(dep_id, body))[0]

    async def resume(
        self,
        dep_id: uuid.UUID,
        *,
        promote: bool = False,
        keep_previous: bool | None = None,
        rollback: bool = False,
    ) -> Deployment:
        """Start a stopped, failed or idle deployment again (no-op for a serving one)."""
        dep, needs_watch, moved = await run_sync(
            self.changes.prepare_start,
            dep_id,
            promote=promote,
            keep_previous=keep_previous,
            rollback=rollback,
        )
        if moved:  # served from its run's nodes: now from the trainer's machine
            self.servers.drop_executor(dep_id)
        if needs_watch:
            self.start(dep_id)
        return dep

    async def promote(
        self, dep_id: uuid.UUID, *, keep_previous: bool | None = None, rollback: bool = False
    ) -> Deployment:
        """Make the deployment the project's live one: at once when it serves (running or
        idle), else once it is running (a stopped one is started)."""
        dep = await asyncio.to_thread(self.get, dep_id)
        if dep.status in ("running", "idle"):
            superseded = await run_sync(
                self.changes.promote_now, dep_id, keep_previous=keep_previous, rollback=rollback
            )
            await self.watchers.stop_superseded(superseded)
            return await asyncio.to_thread(self.get, dep_id)
        return await self.resume(
            dep_id, promote=True, keep_previous=keep_previous, rollback=rollback
        )

    async def rollback(self, project_id: uuid.UUID) -> Deployment:
        """Move the project's alias back to the deployment live before the current one."""
        previous = await run_sync(self.records.previous_of, project_id)
        if previous is None:
            raise Conflict("this project has no earlier live deployment to roll back to")
        return await self.promote(previous, rollback=True)

    async def configure(
        self,
        dep_id: uuid.UUID,
        *,
        replicas: int | None = None,
        idle_timeout_s: int | None = None,
        clear_idle_timeout: bool = False,
        keep_previous: bool | None = None,
    ) -> Deployment:
        """Change a deployment's settings; a serving one with a new replica count starts
        its servers again with it."""
        dep = await asyncio.to_thread(self.get, dep_id)
        changes: dict[str, Any] = {}
        if replicas is not None:
            changes["replicas"] = replicas
        if idle_timeout_s is not None or clear_idle_timeout:
            changes["idle_timeout_s"] = idle_timeout_s
        if keep_previous is not None:
            changes["keep_previous"] = keep_previous
        if changes:
            await run_sync(self.records.update, dep_id, **changes)
        if replicas is not None and replicas != dep.replicas and dep.status == "running":
            if await run_sync(self.records.move, dep_id, ("running",), "waking"):
                self.start(dep_id)
        return await asyncio.to_thread(self.get, dep_id)

    async def stop(
        self,
        dep_id: uuid.UUID,
        *,
        reason: str = "stopped",
        by: str | None = None,
        delete: bool = False,
    ) -> Deployment:
        """Stop the servers and remove the decrypted model they served (``delete``: the
        deployment goes too)."""
        dep = await run_sync(self.changes.record_stop, dep_id, reason=reason, by=by, delete=delete)
        watcher = self.watchers.tasks.pop(dep_id, None)
        if watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()
        executor = await self.servers.executor(dep)
        try:
            await self.servers.kill(dep, executor)
            ws = dep.workdir or ""
            if posixpath.basename(ws).startswith("aidp-deploy-"):
                await executor.remove_tree(ws)
            else:
                await executor.remove_tree(posixpath.join(ws, "serve-model"))
        except ProviderError as exc:
            log.warning("could not stop deployment %s cleanly: %s", dep_id, exc)
        finally:
            await executor.close()
            self.servers.drop_executor(dep_id)
            await self.servers.endpoints.forget(dep_id)
            self.traffic.forget(dep_id)
        if not delete:
            await run_sync(self.records.update, dep_id, pid=None, port=None, procs=None)
        dep.status = "stopped"
        return dep

    # -- shutdown ------------------------------------------------------------------------

    def _stop_on_shutdown(self) -> bool:
        chosen = self.settings.trainer_stop_servers_on_shutdown
        return chosen if chosen is not None else self.settings.mode == "embedded"

    async def close(self) -> None:
        """Stop watching and disconnect. Distributed: the servers keep running (a replica
        adopts them). Embedded (``trainer_stop_servers_on_shutdown``): the servers stop,
        and the deployments that served start again at the next start."""
        watchers = list(self.watchers.tasks.values())
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        if self._stop_on_shutdown():
            try:
                await self._shutdown_servers()
            except Exception:
                log.exception("stopping the inference servers at shutdown failed")
        await self.servers.close()

    async def _shutdown_servers(self) -> None:
        """Kill every server of the deployments this trainer serves; a running one is left
        ``waking`` (started again, without a new ``ModelDeployed``, at the next start)."""
        deps = await run_sync(self.leases.serving_here)
        for dep in deps:
            executor = await self.servers.executor(dep)
            try:
                await self.servers.kill(dep, executor)
            except Exception:
                log.warning("could not stop the servers of deployment %s", dep.id)
            status = "starting" if dep.status == "starting" else "waking"
            await run_sync(
                self.records.update,
                dep.id,
                status=status,
                pid=None,
                port=None,
                procs=None,
                owner=None,
                lease_until=None,
                reason="the platform stopped; it starts again with it",
            )
        if deps:
            log.info("stopped the inference servers of %d deployment(s)", len(deps))
