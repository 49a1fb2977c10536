"""Deployments: an inference server per deployed model version, on a node.

Starting: stage the model (decrypted) into the deployment's workspace, start
``serving/server.py`` with the node's python, wait for its port file and for
``/v2/health/ready``, then emit ``ModelDeployed`` (``DeploymentFailed`` otherwise). A
watcher polls health; a server failing ``trainer_health_failures`` checks in a row is
restarted up to ``trainer_serving_restarts`` times, then reported with ``DeploymentFailed``.

Lifecycle (issue 16): ``starting → running``; ``running → idle`` after ``idle_timeout_s``
without a request (scale to zero: the servers stop, the model stays staged); ``idle →
waking → running`` on the next request (a cold start: the request waits, bounded by
``trainer_cold_start_timeout``); ``stop`` → ``stopped`` (``DeploymentStopped``); ``start``
→ ``starting`` again; ``failed`` past the restart budget. ``replicas`` server processes
serve one deployment, requests go round-robin. A deployment created with
``promote_on_ready`` becomes the project's live alias (:mod:`services.trainer.live`) once
running and then stops the project's other deployments, unless ``keep_previous``.
In embedded mode (``aidp up``) the servers stop with the trainer and the deployments that
were serving start again at its next start.

Several trainer replicas: each live deployment is watched by exactly one of them, the
holder of its lease (``owner``/``lease_until`` in ``trainer_deployments``, renewed every
third of ``trainer_lease_seconds``). Only the holder restarts a crashed server; when a
replica dies or stops, its leases expire (or are released) and another replica's
supervisor adopts the running servers (health check) or restarts them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import posixpath
import signal
import time
import uuid
from datetime import UTC, timedelta
from typing import Any

import httpx
from sqlalchemy import or_, update
from sqlmodel import col, select

from services.trainer import live
from services.trainer.endpoints import ServerEndpoints
from services.trainer.models import Deployment, ModelVersion, Run, now
from services.trainer.nodes import NodeExecutor, node_executor
from services.trainer.runs import transition
from services.trainer.settings import TrainerSettings
from services.trainer.staging import stage_manifest, stage_sources
from shared.errors import Conflict, InvalidInput, NotFound, ProviderError, TransientError
from shared.events import (
    DeploymentFailed,
    DeploymentStopped,
    EventPayload,
    ModelDeployed,
    NodeInfo,
    new_event,
)
from shared.runtime import ServiceRuntime
from shared.store import ArtifactStore

__all__ = ["DeploymentManager", "Forwarded", "deployment_view"]

log = logging.getLogger(__name__)

#: Deployment states in which a server should be up (and watched).
LIVE = ("starting", "running", "restarting", "waking")
#: States a request waits through (bounded) rather than being refused.
WAITS = ("starting", "waking", "idle")
#: Seconds between writes of a deployment's ``last_request_at`` (busy endpoints).
_TOUCH_EVERY = 2.0


def deployment_view(
    dep: Deployment, *, version: int | None = None, live_id: uuid.UUID | None = None
) -> dict[str, Any]:
    return {
        "id": str(dep.id),
        "project_id": str(dep.project_id),
        "model_id": str(dep.model_id),
        "model_version": version,
        "run_id": str(dep.run_id) if dep.run_id else None,
        "status": dep.status,
        "endpoint": dep.endpoint,
        "node": (dep.node or {}).get("name"),
        "replicas": dep.replicas,
        "replicas_up": len(dep.procs or []) if dep.status == "running" else 0,
        "idle_timeout_s": dep.idle_timeout_s,
        "keep_previous": dep.keep_previous,
        "live": live_id is not None and live_id == dep.id,
        "restarts": dep.restarts,
        "reason": dep.reason,
        "last_request_at": dep.last_request_at.isoformat() if dep.last_request_at else None,
        "created_at": dep.created_at.isoformat(),
        "updated_at": dep.updated_at.isoformat(),
    }


class Forwarded:
    """A server's answer and how it was reached (the replica; whether it was cold)."""

    def __init__(self, response: httpx.Response, *, replica: int, cold: bool) -> None:
        self.response = response
        self.replica = replica
        self.cold = cold

    def headers(self) -> dict[str, str]:
        return {
            "X-Aidp-Replica": str(self.replica),
            "X-Aidp-Cold-Start": "true" if self.cold else "false",
        }


class DeploymentManager:
    """Starts, watches, forwards to and stops this trainer's inference servers."""

    def __init__(
        self, runtime: ServiceRuntime, settings: TrainerSettings, store: ArtifactStore
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self.store = store
        self.instance = uuid.uuid4().hex
        self._executors: dict[uuid.UUID, NodeExecutor] = {}
        self._watchers: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._endpoints = ServerEndpoints(timeout=60)
        self._turn: dict[uuid.UUID, int] = {}  # round-robin position per deployment
        self._used: dict[uuid.UUID, float] = {}  # loop time of the last request
        self._touched: dict[uuid.UUID, float] = {}  # loop time last_request_at was written

    def _executor(self, dep: Deployment) -> NodeExecutor:
        executor = self._executors.get(dep.id)
        if executor is None:
            executor = node_executor(
                dep.node or {}, self.settings, tenant=dep.run_id or dep.model_id
            )
            self._executors[dep.id] = executor
        return executor

    # -- creating ------------------------------------------------------------------------

    def _trainer_node(self) -> dict[str, Any]:
        return NodeInfo(
            name="trainer-local",
            address="127.0.0.1",
            provider="local",
            workdir=str(self.settings.serving_root()),
            python=self.settings.trainer_serving_python,
        ).model_dump()

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
        with self.runtime.db.session() as session:
            model = session.get(ModelVersion, model_id)
            if model is None:
                raise NotFound(f"model {model_id} not found")
            run = session.get(Run, model.run_id)
            dep_id = uuid.uuid4()
            if run is not None and run.nodes and not run.nodes_released:
                node = dict(run.nodes[0])
            else:
                node = self._trainer_node()
            dep = Deployment(
                id=dep_id,
                project_id=model.project_id,
                model_id=model.id,
                run_id=None,
                node=node,
                workdir=posixpath.join(node["workdir"], f"aidp-deploy-{dep_id}"),
                replicas=replicas,
                idle_timeout_s=idle_timeout_s,
                keep_previous=keep_previous,
                promote_on_ready=promote,
            )
            session.add(dep)
            session.commit()
            return dep

    def start(self, deployment_id: uuid.UUID) -> None:
        """Start (or restart) the server in the background, if this replica gets the lease."""
        old = self._watchers.pop(deployment_id, None)
        if old is not None:
            old.cancel()
        self._watchers[deployment_id] = self.runtime.spawn(
            self._leased(deployment_id), name=f"deployment-{deployment_id}"
        )

    async def resume_all(self) -> None:
        """One pass of :meth:`supervise`: take over deployments nobody watches."""
        for dep_id in await asyncio.to_thread(self._unwatched):
            if dep_id not in self._watchers:
                self.start(dep_id)

    async def supervise(self) -> None:
        """Until cancelled: adopt deployments whose watcher lease expired (a replica died)."""
        while True:
            try:
                await self.resume_all()
            except Exception:
                log.exception("deployment supervisor pass failed")
            await asyncio.sleep(self.settings.trainer_lease_seconds / 2)

    # -- the watch lease (one replica per deployment) ------------------------------------

    def _unwatched(self) -> list[uuid.UUID]:
        with self.runtime.db.session() as session:
            return list(
                session.exec(
                    select(Deployment.id).where(
                        col(Deployment.status).in_(LIVE),
                        or_(
                            col(Deployment.owner).is_(None),
                            col(Deployment.lease_until) < now(),
                            col(Deployment.owner) == self.instance,
                        ),
                    )
                ).all()
            )

    def _claim(self, dep_id: uuid.UUID) -> bool:
        """Take (or extend) the lease; False while another replica holds a live one."""
        with self.runtime.db.session() as session:
            result = session.execute(
                update(Deployment)
                .where(
                    col(Deployment.id) == dep_id,
                    col(Deployment.status).in_(LIVE),
                    or_(
                        col(Deployment.owner).is_(None),
                        col(Deployment.lease_until) < now(),
                        col(Deployment.owner) == self.instance,
                    ),
                )
                .values(
                    owner=self.instance,
                    lease_until=now() + timedelta(seconds=self.settings.trainer_lease_seconds),
                )
            )
            session.commit()
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def _release(self, dep_id: uuid.UUID) -> None:
        with self.runtime.db.session() as session:
            session.execute(
                update(Deployment)
                .where(col(Deployment.id) == dep_id, col(Deployment.owner) == self.instance)
                .values(owner=None, lease_until=None)
            )
            session.commit()

    async def _leased(self, dep_id: uuid.UUID) -> None:
        """Run the deployment's lifecycle while holding its lease; stop if the lease is lost
        (another replica took over: it restarts or adopts the server, never both)."""
        if not await asyncio.to_thread(self._claim, dep_id):
            self._watchers.pop(dep_id, None)
            return
        worker = asyncio.ensure_future(self._run(dep_id))
        try:
            while True:
                done, _ = await asyncio.wait(
                    {worker}, timeout=self.settings.trainer_lease_seconds / 3
                )
                if done:
                    break
                if not await asyncio.to_thread(self._claim, dep_id):
                    log.warning("deployment %s: watch lease lost to another replica", dep_id)
                    worker.cancel()
                    break
            await asyncio.gather(worker, return_exceptions=True)
        finally:
            if not worker.done():
                worker.cancel()
            await asyncio.shield(asyncio.to_thread(self._release, dep_id))
            if self._watchers.get(dep_id) is asyncio.current_task():
                self._watchers.pop(dep_id, None)

    # -- the lifecycle of one server -----------------------------------------------------

    def _load(self, dep_id: uuid.UUID) -> tuple[Deployment, ModelVersion]:
        with self.runtime.db.session() as session:
            dep = session.get(Deployment, dep_id)
            if dep is None:
                raise NotFound(f"deployment {dep_id} not found")
            model = session.get(ModelVersion, dep.model_id)
            if model is None:
                raise NotFound(f"model {dep.model_id} not found")
            return dep, model

    async def _run(self, dep_id: uuid.UUID) -> None:
        try:
            dep, model = await asyncio.to_thread(self._load, dep_id)
            if dep.status == "running":  # adopted: after a restart or from another replica
                if await self._healthy(dep):
                    self._used.setdefault(dep_id, time.time())
                    outcome = await self._watch(dep_id)
                    if outcome != "unhealthy":
                        if outcome == "idle":
                            await self._scale_to_zero(dep_id)
                        return
                if not await asyncio.to_thread(
                    self._count_restart, dep_id, "inference server stopped answering"
                ):
                    return
            while True:
                dep, model = await asyncio.to_thread(self._load, dep_id)
                if dep.status not in LIVE:
                    return
                try:
                    await self._start_server(dep, model)
                except Exception as exc:
                    log.warning("deployment %s failed to start: %s", dep_id, exc)
                    if not await asyncio.to_thread(self._count_restart, dep_id, str(exc)):
                        return
                    continue
                outcome = await self._watch(dep_id)
                if outcome == "idle":
                    await self._scale_to_zero(dep_id)
                    return
                if outcome == "gone" or not await asyncio.to_thread(
                    self._count_restart, dep_id, "inference server stopped answering"
                ):
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("deployment %s crashed", dep_id)
            await asyncio.to_thread(self._fail, dep_id, f"deployment error: {exc}")

    @staticmethod
    def _procs(dep: Deployment) -> list[dict[str, Any]]:
        """One ``{"pid", "port"}`` per started replica (older rows: replica 0's columns)."""
        if dep.procs:
            return [dict(p) for p in dep.procs]
        if dep.pid or dep.port is not None:
            return [{"pid": dep.pid, "port": dep.port}]
        return []

    async def _kill_servers(self, dep: Deployment, executor: NodeExecutor) -> None:
        """SIGTERM every replica's process group, SIGKILL what is left after a moment."""
        pids = [int(p["pid"]) for p in self._procs(dep) if p.get("pid")]
        if dep.pid and dep.pid not in pids:
            pids.append(dep.pid)
        if not pids:
            return
        for pid in pids:
            await executor.kill_group(pid, signal.SIGTERM)
        await asyncio.sleep(0.5)
        for pid in pids:
            await executor.kill_group(pid, signal.SIGKILL)

    async def _start_server(self, dep: Deployment, model: ModelVersion) -> None:
        """Start ``dep.replicas`` servers on the staged model; mark the deployment running."""
        executor = self._executor(dep)
        ws = dep.workdir or ""
        for p in self._procs(dep):
            if p.get("pid"):
                await executor.kill_group(int(p["pid"]), signal.SIGKILL)
        await stage_sources(executor=executor, workspace=ws, extra={})
        await stage_manifest(
            executor=executor,
            store=self.store,
            key=model.manifest_key,
            workspace=ws,
            dest="serve-model",
        )
        await self._endpoints.forget(dep.id)
        await executor.write_chunks(posixpath.join(ws, "serve", ".keep"), _empty())
        procs: list[dict[str, Any]] = []
        port_files: list[str] = []
        try:
            for replica in range(max(1, dep.replicas)):
                suffix = "" if replica == 0 else f"-{replica}"
                port_file = posixpath.join(ws, "serve", f"server{suffix}.json")
                await executor.remove_tree(port_file)
                reach = await self._endpoints.server_args(dep.id, executor, ws, replica=replica)
                argv = [
                    executor.python,
                    posixpath.join(ws, "src", "serving_server.py"),
                    "--model-dir",
                    posixpath.join(ws, "serve-model"),
                    "--name",
                    f"model-{model.version}",
                    "--task",
                    model.task,
                    "--port",
                    "0",
                    "--port-file",
                    port_file,
                    "--log-file",
                    posixpath.join(ws, "serve", f"server{suffix}.log"),
                    *reach,
                ]
                proc = await executor.start(
                    argv,
                    cwd=ws,
                    env={
                        "PYTHONUNBUFFERED": "1",
                        "HF_HUB_OFFLINE": "1",
                        "TRANSFORMERS_OFFLINE": "1",
                        "TRANSFORMERS_VERBOSITY": "error",
                        "TOKENIZERS_PARALLELISM": "false",
                    },
                )
                procs.append({"pid": proc.pgid, "port": None})
                port_files.append(port_file)
                await asyncio.to_thread(
                    self._update, dep.id, pid=procs[0]["pid"], procs=[dict(p) for p in procs]
                )
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.settings.trainer_serving_start_timeout
            for proc_info, port_file in zip(procs, port_files, strict=True):
                while proc_info["port"] is None:
                    if loop.time() > deadline:
                        raise ProviderError(
                            "inference server did not start in time", retryable=True
                        )
                    if port_file in await executor.existing([port_file]):
                        raw = b"".join([c async for c in executor.read_chunks(port_file)])
                        proc_info["port"] = int(json.loads(raw).get("port") or 0)  # 0: a socket
                    else:
                        await asyncio.sleep(0.3)
            await asyncio.to_thread(
                self._update, dep.id, port=procs[0]["port"], procs=[dict(p) for p in procs]
            )
            dep.port, dep.procs = procs[0]["port"], procs
            for _ in range(50):
                if await self._healthy(dep):
                    break
                await asyncio.sleep(0.2)
            else:
                raise ProviderError("inference server never became ready", retryable=True)
        except BaseException:
            for proc_info in procs:
                await executor.kill_group(int(proc_info["pid"]), signal.SIGKILL)
            raise
        self._used[dep.id] = time.time()
        superseded = await asyncio.to_thread(self._mark_running, dep.id, str(model.id))
        await self._stop_superseded(superseded)

    async def _stop_superseded(self, dep_ids: list[uuid.UUID]) -> None:
        for other in dep_ids:
            try:
                await self.stop(other, reason="superseded")
            except Exception:
                log.exception("could not stop superseded deployment %s", other)

    async def _call(
        self,
        dep: Deployment,
        method: str,
        path: str,
        *,
        json: object = None,
        timeout: float | None = None,
        replica: int = 0,
        content: bytes | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        procs = self._procs(dep)
        port = procs[replica]["port"] if replica < len(procs) else dep.port
        return await self._endpoints.request(
            method,
            path,
            dep_id=dep.id,
            executor=self._executor(dep),
            workspace=dep.workdir or "",
            port=port,
            json=json,
            timeout=timeout,
            replica=replica,
            content=content,
            stream=stream,
        )

    async def _healthy(self, dep: Deployment) -> bool:
        """Every replica answers ``/v2/health/ready``."""
        procs = self._procs(dep)
        if not procs or any(p.get("port") is None for p in procs):
            return False
        for replica in range(len(procs)):
            try:
                response = await self._call(
                    dep, "GET", "/v2/health/ready", timeout=5, replica=replica
                )
            except (httpx.HTTPError, OSError, ProviderError):
                return False
            if response.status_code != 200:
                return False
        return True

    async def _watch(self, dep_id: uuid.UUID) -> str:
        """Return ``unhealthy`` when the server failed ``trainer_health_failures`` checks in
        a row, ``gone`` when the deployment stopped running, ``idle`` when it has had no
        request for its ``idle_timeout_s``."""
        failures = 0
        while failures < self.settings.trainer_health_failures:
            await asyncio.sleep(self.settings.trainer_health_seconds)
            dep, _ = await asyncio.to_thread(self._load, dep_id)
            if dep.status != "running":
                return "gone"
            if self._idle_for(dep) is not None:
                return "idle"
            failures = 0 if await self._healthy(dep) else failures + 1
        return "unhealthy"

    def _idle_for(self, dep: Deployment) -> float | None:
        """Seconds without a request when past the deployment's idle timeout, else None."""
        if not dep.idle_timeout_s:
            return None
        last = self._used.get(dep.id, 0.0)
        if dep.last_request_at is not None:
            stamp = dep.last_request_at
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=UTC)
            last = max(last, stamp.timestamp())
        if not last:
            self._used[dep.id] = last = time.time()
        idle = time.time() - last
        return idle if idle >= dep.idle_timeout_s else None

    async def _scale_to_zero(self, dep_id: uuid.UUID) -> None:
        """Stop the servers of an idle deployment; it stays ``idle`` until a request comes."""
        dep, _ = await asyncio.to_thread(self._load, dep_id)
        reason = f"scaled to zero after {dep.idle_timeout_s}s without a request"
        if not await asyncio.to_thread(self._move, dep_id, ("running",), "idle", reason=reason):
            return
        executor = self._executor(dep)
        try:
            await self._kill_servers(dep, executor)
        finally:
            await self._endpoints.forget(dep_id)
            await asyncio.to_thread(self._update, dep_id, pid=None, port=None, procs=None)
        log.info("deployment %s: %s", dep_id, reason)

    # -- state changes (one event each) --------------------------------------------------

    def _update(self, dep_id: uuid.UUID, **changes: Any) -> None:
        with self.runtime.db.session() as session:
            dep = session.get(Deployment, dep_id)
            if dep is not None:
                for k, v in changes.items():
                    setattr(dep, k, v)
                dep.updated_at = now()
                session.add(dep)
                session.commit()

    def _move(self, dep_id: uuid.UUID, sources: tuple[str, ...], to: str, **changes: Any) -> bool:
        """``status`` from one of ``sources`` to ``to`` (compare and set); True if it moved."""
        with self.runtime.db.session() as session:
            result = session.execute(
                update(Deployment)
                .where(col(Deployment.id) == dep_id, col(Deployment.status).in_(sources))
                .values(status=to, updated_at=now(), **changes)
            )
            session.commit()
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def _touch(self, dep_id: uuid.UUID) -> None:
        with self.runtime.db.session() as session:
            session.execute(
                update(Deployment).where(col(Deployment.id) == dep_id).values(last_request_at=now())
            )
            session.commit()

    def _mark_running(self, dep_id: uuid.UUID, model_version: str) -> list[uuid.UUID]:
        """``running``; the first start emits ``ModelDeployed``; a deployment to promote
        becomes live. Returns the project's deployments it supersedes (to stop)."""
        superseded: list[uuid.UUID] = []
        with self.runtime.db.session() as session:
            dep = session.get(Deployment, dep_id)
            if dep is None or dep.status not in LIVE:
                return []
            first = dep.status == "starting"
            dep.status, dep.reason, dep.updated_at = "running", None, now()
            dep.endpoint = f"{self.settings.trainer_public_prefix}/deployments/{dep.id}/predict"
            session.add(dep)
            if first:
                event = ModelDeployed(
                    deployment_id=dep.id, endpoint=dep.endpoint, model_version=model_version
                )
                run = session.get(Run, dep.run_id) if dep.run_id else None
                if run is not None and run.state == "deploying":
                    transition(session, run, to="deployed", event=event, stage=self.runtime.stage)
                else:
                    self._emit(session, dep, event)
            if dep.promote_on_ready:
                superseded = self._go_live(session, dep)
            session.commit()
        self.runtime.published()
        return superseded

    def _go_live(self, session: Any, dep: Deployment) -> list[uuid.UUID]:
        """Point the project's alias at ``dep`` (in the caller's transaction); returns the
        project's other serving deployments unless ``dep.keep_previous``."""
        live.set_live(
            session,
            dep=dep,
            stage=self.runtime.stage,
            run_id=self._run_of(session, dep),
            rollback=dep.rollback,
        )
        dep.promote_on_ready, dep.rollback = False, False
        session.add(dep)
        if dep.keep_previous:
            return []
        others = session.exec(
            select(Deployment.id).where(
                Deployment.project_id == dep.project_id,
                Deployment.id != dep.id,
                col(Deployment.status).in_((*LIVE, "idle")),
            )
        ).all()
        return list(others)

    def _emit(self, session: Any, dep: Deployment, event: EventPayload) -> None:
        self.runtime.stage(
            session,
            new_event(event, project_id=dep.project_id, run_id=self._run_of(session, dep)),
        )

    @staticmethod
    def _run_of(session: Any, dep: Deployment) -> uuid.UUID | None:
        model = session.get(ModelVersion, dep.model_id)
        return model.run_id if model is not None else dep.run_id

    def _count_restart(self, dep_id: uuid.UUID, reason: str) -> bool:
        """Record a crash; True when another start is allowed, else the deployment fails."""
        with self.runtime.db.session() as session:
            dep = session.get(Deployment, dep_id)
            if dep is None or dep.status not in LIVE:
                return False
            if dep.restarts < self.settings.trainer_serving_restarts:
                dep.restarts += 1
                dep.reason = reason
                if dep.status == "running":  # predict answers 409 until it is back
                    dep.status = "restarting"
                dep.updated_at = now()
                session.add(dep)
                session.commit()
                return True
        self._fail(dep_id, reason)
        return False

    def _fail(self, dep_id: uuid.UUID, reason: str) -> None:
        with self.runtime.db.session() as session:
            dep = session.get(Deployment, dep_id)
            if dep is None or dep.status in ("failed", "stopped"):
                return
            dep.status, dep.reason, dep.updated_at = "failed", reason, now()
            dep.promote_on_ready = False
            session.add(dep)
            event = DeploymentFailed(reason=reason, deployment_id=dep.id)
            run = session.get(Run, dep.run_id) if dep.run_id else None
            if run is not None and run.state == "deploying":
                transition(session, run, to="deploy_failed", event=event, stage=self.runtime.stage)
            else:
                self._emit(session, dep, event)
            session.commit()
        self.runtime.published()

    def _record_stop(
        self, dep_id: uuid.UUID, *, reason: str, by: str | None, delete: bool
    ) -> Deployment:
        """``stopped`` (or the row deleted) with one ``DeploymentStopped`` when it served."""
        with self.runtime.db.session() as session:
            dep = session.get(Deployment, dep_id)
            if dep is None:
                raise NotFound(f"deployment {dep_id} not found")
            serving = dep.status in (*LIVE, "idle")
            on_run_nodes = (
                dep.run_id is not None
                and posixpath.basename(dep.workdir or "").startswith("aidp-run-")
                and reason != "nodes released"
            )
            dep.status, dep.reason, dep.updated_at = "stopped", reason, now()
            dep.promote_on_ready = dep.rollback = False
            session.add(dep)
            if serving or delete:
                self._emit(
                    session,
                    dep,
                    DeploymentStopped(
                        deployment_id=dep.id, reason=reason, by=by, on_run_nodes=on_run_nodes
                    ),
                )
            session.flush()
            session.expunge(dep)
            if delete:
                live.forget(session, dep=dep)
                row = session.get(Deployment, dep_id)
                if row is not None:
                    session.delete(row)
            session.commit()
        self.runtime.published()
        return dep

    def _prepare_start(
        self,
        dep_id: uuid.UUID,
        *,
        promote: bool,
        keep_previous: bool | None,
        rollback: bool,
    ) -> tuple[Deployment, bool]:
        """Ready a deployment to serve: a stopped or failed one goes back to ``starting``
        (on the trainer's machine when it served from its run's nodes: those are released
        once it stopped), an idle one to ``waking``. Returns (deployment, whether a watcher
        must be started)."""
        with self.runtime.db.session() as session:
            dep = session.get(Deployment, dep_id)
            if dep is None:
                raise NotFound(f"deployment {dep_id} not found")
            if keep_previous is not None:
                dep.keep_previous = keep_previous
            if promote:
                dep.promote_on_ready, dep.rollback = True, rollback
            needs_watch = False
            if dep.status in ("stopped", "failed"):
                if posixpath.basename(dep.workdir or "").startswith("aidp-run-"):
                    node = self._trainer_node()
                    dep.node = node
                    dep.workdir = posixpath.join(node["workdir"], f"aidp-deploy-{dep.id}")
                    dep.run_id = None
                    self._executors.pop(dep.id, None)
                dep.status, dep.reason, dep.restarts = "starting", None, 0
                dep.pid, dep.port, dep.procs = None, None, None
                needs_watch = True
            elif dep.status == "idle":
                dep.status, dep.reason = "waking", None
                needs_watch = True
            dep.updated_at = now()
            session.add(dep)
            session.commit()
            session.refresh(dep)
            return dep, needs_watch

    def _promote_now(
        self, dep_id: uuid.UUID, *, keep_previous: bool | None, rollback: bool
    ) -> list[uuid.UUID]:
        with self.runtime.db.session() as session:
            dep = session.get(Deployment, dep_id)
            if dep is None:
                raise NotFound(f"deployment {dep_id} not found")
            if keep_previous is not None:
                dep.keep_previous = keep_previous
            dep.rollback = rollback
            superseded = self._go_live(session, dep)
            session.commit()
        self.runtime.published()
        return superseded

    # -- API operations ------------------------------------------------------------------

    def get(self, dep_id: uuid.UUID) -> Deployment:
        return self._load(dep_id)[0]

    def view(self, dep_id: uuid.UUID) -> dict[str, Any]:
        """The API view of one deployment (its model version, whether it is live)."""
        with self.runtime.db.session() as session:
            dep = session.get(Deployment, dep_id)
            if dep is None:
                raise NotFound(f"deployment {dep_id} not found")
            model = session.get(ModelVersion, dep.model_id)
            return deployment_view(
                dep,
                version=model.version if model is not None else None,
                live_id=live.live_of(session, dep.project_id),
            )

    def list_views(self, project_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
        """The deployments of these projects, newest first."""
        if not project_ids:
            return []
        with self.runtime.db.session() as session:
            rows = session.exec(
                select(Deployment, ModelVersion.version)
                .join(ModelVersion, col(ModelVersion.id) == col(Deployment.model_id), isouter=True)
                .where(col(Deployment.project_id).in_(project_ids))
                .order_by(col(Deployment.created_at).desc())
            ).all()
            lives = {pid: live.live_of(session, pid) for pid in {d.project_id for d, _ in rows}}
            return [deployment_view(d, version=v, live_id=lives.get(d.project_id)) for d, v in rows]

    def endpoint_view(self, project_id: uuid.UUID) -> dict[str, Any]:
        """The project's live alias: the live deployment, the one roll back returns to."""
        with self.runtime.db.session() as session:
            live_id = live.live_of(session, project_id)
            previous = live.previous_of(session, project_id)
        return {
            "project_id": str(project_id),
            "deployment_id": str(live_id) if live_id else None,
            "previous_deployment_id": str(previous) if previous else None,
            "deployment": self.view(live_id) if live_id else None,
        }

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
        procs = self._procs(dep)
        if dep.status != "running" or not procs:
            raise Conflict(f"deployment {dep_id} is {dep.status}, not running")
        replica = (self._turn.get(dep_id, -1) + 1) % len(procs)
        self._turn[dep_id] = replica
        stamp = time.time()
        self._used[dep_id] = stamp
        if stamp - self._touched.get(dep_id, 0.0) >= _TOUCH_EVERY:
            self._touched[dep_id] = stamp
            await asyncio.to_thread(self._touch, dep_id)
        response = await self._call(
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
        dep, needs_watch = await asyncio.to_thread(
            self._prepare_start,
            dep_id,
            promote=promote,
            keep_previous=keep_previous,
            rollback=rollback,
        )
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
            superseded = await asyncio.to_thread(
                self._promote_now, dep_id, keep_previous=keep_previous, rollback=rollback
            )
            await self._stop_superseded(superseded)
            return await asyncio.to_thread(self.get, dep_id)
        return await self.resume(
            dep_id, promote=True, keep_previous=keep_previous, rollback=rollback
        )

    async def rollback(self, project_id: uuid.UUID) -> Deployment:
        """Move the project's alias back to the deployment live before the current one."""
        with self.runtime.db.session() as session:
            previous = live.previous_of(session, project_id)
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
            await asyncio.to_thread(self._update, dep_id, **changes)
        if replicas is not None and replicas != dep.replicas and dep.status == "running":
            if await asyncio.to_thread(self._move, dep_id, ("running",), "waking"):
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
        dep = await asyncio.to_thread(
            self._record_stop, dep_id, reason=reason, by=by, delete=delete
        )
        watcher = self._watchers.pop(dep_id, None)
        if watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()
        executor = self._executor(dep)
        try:
            await self._kill_servers(dep, executor)
            ws = dep.workdir or ""
            if posixpath.basename(ws).startswith("aidp-deploy-"):
                await executor.remove_tree(ws)
            else:
                await executor.remove_tree(posixpath.join(ws, "serve-model"))
        except ProviderError as exc:
            log.warning("could not stop deployment %s cleanly: %s", dep_id, exc)
        finally:
            await executor.close()
            self._executors.pop(dep_id, None)
            await self._endpoints.forget(dep_id)
            for table in (self._turn, self._used, self._touched):
                table.pop(dep_id, None)
        if not delete:
            await asyncio.to_thread(self._update, dep_id, pid=None, port=None, procs=None)
        dep.status = "stopped"
        return dep

    def _stop_on_shutdown(self) -> bool:
        chosen = self.settings.trainer_stop_servers_on_shutdown
        return chosen if chosen is not None else self.settings.mode == "embedded"

    async def close(self) -> None:
        """Stop watching and disconnect. Distributed: the servers keep running (a replica
        adopts them). Embedded (``trainer_stop_servers_on_shutdown``): the servers stop,
        and the deployments that served start again at the next start."""
        watchers = list(self._watchers.values())
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        if self._stop_on_shutdown():
            try:
                await self._shutdown_servers()
            except Exception:
                log.exception("stopping the inference servers at shutdown failed")
        for executor in self._executors.values():
            await executor.close()
        self._executors.clear()
        await self._endpoints.close()

    def _serving_here(self) -> list[Deployment]:
        with self.runtime.db.session() as session:
            return list(
                session.exec(
                    select(Deployment).where(
                        col(Deployment.status).in_(LIVE),
                        or_(
                            col(Deployment.owner).is_(None),
                            col(Deployment.lease_until) < now(),
                            col(Deployment.owner) == self.instance,
                        ),
                    )
                ).all()
            )

    async def _shutdown_servers(self) -> None:
        """Kill every server of the deployments this trainer serves; a running one is left
        ``waking`` (started again, without a new ``ModelDeployed``, at the next start)."""
        deps = await asyncio.to_thread(self._serving_here)
        for dep in deps:
            executor = self._executor(dep)
            try:
                await self._kill_servers(dep, executor)
            except Exception:
                log.warning("could not stop the servers of deployment %s", dep.id)
            status = "starting" if dep.status == "starting" else "waking"
            await asyncio.to_thread(
                self._update,
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


async def _empty() -> Any:
    yield b""
