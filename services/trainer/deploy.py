"""Deployments: an inference server per deployed model version, on a node.

Starting: stage the model (decrypted) into the deployment's workspace, start
``serving/server.py`` with the node's python, wait for its port file and for
``/v2/health/ready``, then emit ``ModelDeployed`` (``DeploymentFailed`` otherwise). A
watcher polls health; a server failing ``trainer_health_failures`` checks in a row is
restarted up to ``trainer_serving_restarts`` times, then reported with ``DeploymentFailed``.

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
import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import or_, update
from sqlmodel import col, select

from services.trainer.endpoints import ServerEndpoints
from services.trainer.models import Deployment, ModelVersion, Run, now
from services.trainer.nodes import NodeExecutor, node_executor
from services.trainer.runs import transition
from services.trainer.settings import TrainerSettings
from services.trainer.staging import stage_manifest, stage_sources
from shared.errors import Conflict, NotFound, ProviderError
from shared.events import DeploymentFailed, ModelDeployed, NodeInfo, new_event
from shared.runtime import ServiceRuntime
from shared.store import ArtifactStore

__all__ = ["DeploymentManager", "deployment_view"]

log = logging.getLogger(__name__)

#: Deployment states in which a server should be up (and watched).
LIVE = ("starting", "running", "restarting")


def deployment_view(dep: Deployment) -> dict[str, Any]:
    return {
        "id": str(dep.id),
        "project_id": str(dep.project_id),
        "model_id": str(dep.model_id),
        "run_id": str(dep.run_id) if dep.run_id else None,
        "status": dep.status,
        "endpoint": dep.endpoint,
        "node": (dep.node or {}).get("name"),
        "restarts": dep.restarts,
        "reason": dep.reason,
        "created_at": dep.created_at.isoformat(),
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

    def _executor(self, dep: Deployment) -> NodeExecutor:
        executor = self._executors.get(dep.id)
        if executor is None:
            executor = node_executor(
                dep.node or {}, self.settings, tenant=dep.run_id or dep.model_id
            )
            self._executors[dep.id] = executor
        return executor

    # -- creating ------------------------------------------------------------------------

    def create(self, *, model_id: uuid.UUID) -> Deployment:
        """A new deployment of a model (route deploy): on its run's first node while that
        node is held, else on the trainer's machine. The caller then calls :meth:`start`."""
        with self.runtime.db.session() as session:
            model = session.get(ModelVersion, model_id)
            if model is None:
                raise NotFound(f"model {model_id} not found")
            run = session.get(Run, model.run_id)
            dep_id = uuid.uuid4()
            if run is not None and run.nodes and not run.nodes_released:
                node = dict(run.nodes[0])
            else:
                node = NodeInfo(
                    name="trainer-local",
                    address="127.0.0.1",
                    provider="local",
                    workdir=str(self.settings.serving_root()),
                    python=self.settings.trainer_serving_python,
                ).model_dump()
            dep = Deployment(
                id=dep_id,
                project_id=model.project_id,
                model_id=model.id,
                run_id=None,
                node=node,
                workdir=posixpath.join(node["workdir"], f"aidp-deploy-{dep_id}"),
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
                    await self._watch(dep_id)
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
                await self._watch(dep_id)
                if not await asyncio.to_thread(
                    self._count_restart, dep_id, "inference server stopped answering"
                ):
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("deployment %s crashed", dep_id)
            await asyncio.to_thread(self._fail, dep_id, f"deployment error: {exc}")

    async def _start_server(self, dep: Deployment, model: ModelVersion) -> None:
        executor = self._executor(dep)
        ws = dep.workdir or ""
        if dep.pid:
            await executor.kill_group(dep.pid, signal.SIGKILL)
        await stage_sources(executor=executor, workspace=ws, extra={})
        await stage_manifest(
            executor=executor,
            store=self.store,
            key=model.manifest_key,
            workspace=ws,
            dest="serve-model",
        )
        port_file = posixpath.join(ws, "serve", "server.json")
        await executor.remove_tree(port_file)
        await self._endpoints.forget(dep.id)
        await executor.write_chunks(posixpath.join(ws, "serve", ".keep"), _empty())
        reach = await self._endpoints.server_args(dep.id, executor, ws)
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
            posixpath.join(ws, "serve", "server.log"),
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
        await asyncio.to_thread(self._update, dep.id, pid=proc.pgid)
        deadline = asyncio.get_running_loop().time() + self.settings.trainer_serving_start_timeout
        port = None
        while port is None:
            if asyncio.get_running_loop().time() > deadline:
                await executor.kill_group(proc.pgid, signal.SIGKILL)
                raise ProviderError("inference server did not start in time", retryable=True)
            if port_file in await executor.existing([port_file]):
                raw = b"".join([c async for c in executor.read_chunks(port_file)])
                port = int(json.loads(raw).get("port") or 0)  # 0: a Unix socket
            else:
                await asyncio.sleep(0.3)
        await asyncio.to_thread(self._update, dep.id, port=port)
        dep.port = port
        for _ in range(50):
            if await self._healthy(dep):
                break
            await asyncio.sleep(0.2)
        else:
            await executor.kill_group(proc.pgid, signal.SIGKILL)
            raise ProviderError("inference server never became ready", retryable=True)
        await asyncio.to_thread(self._mark_running, dep.id, str(model.id))

    async def _call(
        self,
        dep: Deployment,
        method: str,
        path: str,
        *,
        json: object = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        return await self._endpoints.request(
            method,
            path,
            dep_id=dep.id,
            executor=self._executor(dep),
            workspace=dep.workdir or "",
            port=dep.port,
            json=json,
            timeout=timeout,
        )

    async def _healthy(self, dep: Deployment) -> bool:
        if dep.port is None:
            return False
        try:
            response = await self._call(dep, "GET", "/v2/health/ready", timeout=5)
            return response.status_code == 200
        except (httpx.HTTPError, OSError, ProviderError):
            return False

    async def _watch(self, dep_id: uuid.UUID) -> None:
        """Return when the server failed ``trainer_health_failures`` checks in a row (or the
        deployment was stopped)."""
        failures = 0
        while failures < self.settings.trainer_health_failures:
            await asyncio.sleep(self.settings.trainer_health_seconds)
            dep, _ = await asyncio.to_thread(self._load, dep_id)
            if dep.status != "running":
                return
            failures = 0 if await self._healthy(dep) else failures + 1

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

    def _mark_running(self, dep_id: uuid.UUID, model_version: str) -> None:
        with self.runtime.db.session() as session:
            dep = session.get(Deployment, dep_id)
            if dep is None or dep.status not in LIVE:
                return
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
                    self.runtime.stage(
                        session,
                        new_event(
                            event, project_id=dep.project_id, run_id=self._run_of(session, dep)
                        ),
                    )
            session.commit()
        self.runtime.published()

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
            session.add(dep)
            event = DeploymentFailed(reason=reason, deployment_id=dep.id)
            run = session.get(Run, dep.run_id) if dep.run_id else None
            if run is not None and run.state == "deploying":
                transition(session, run, to="deploy_failed", event=event, stage=self.runtime.stage)
            else:
                self.runtime.stage(
                    session,
                    new_event(event, project_id=dep.project_id, run_id=self._run_of(session, dep)),
                )
            session.commit()
        self.runtime.published()

    # -- API operations ------------------------------------------------------------------

    def get(self, dep_id: uuid.UUID) -> Deployment:
        return self._load(dep_id)[0]

    async def predict(self, dep_id: uuid.UUID, body: dict[str, Any]) -> dict[str, Any]:
        """Forward ``body`` to the server's ``/predict``; its answer is returned as is."""
        dep = await asyncio.to_thread(self.get, dep_id)
        if dep.status != "running" or dep.port is None:
            raise Conflict(f"deployment {dep_id} is {dep.status}, not running")
        try:
            response = await self._call(dep, "POST", "/predict", json=body)
        except httpx.HTTPError as exc:
            raise ProviderError(f"inference server unreachable: {exc}", retryable=True) from exc
        if response.status_code == 400:
            from shared.errors import InvalidInput

            raise InvalidInput(response.json().get("error", "invalid input"))
        if response.status_code != 200:
            raise ProviderError(f"inference server answered {response.status_code}", retryable=True)
        return dict(response.json())

    async def stop(self, dep_id: uuid.UUID, *, reason: str = "deleted") -> Deployment:
        """Stop the server and remove the decrypted model it served."""
        dep = await asyncio.to_thread(self.get, dep_id)
        await asyncio.to_thread(self._update, dep_id, status="stopped", reason=reason)
        watcher = self._watchers.pop(dep_id, None)
        if watcher is not None:
            watcher.cancel()
        executor = self._executor(dep)
        try:
            if dep.pid:
                await executor.kill_group(dep.pid, signal.SIGTERM)
                await asyncio.sleep(0.5)
                await executor.kill_group(dep.pid, signal.SIGKILL)
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
        dep.status = "stopped"
        return dep

    async def close(self) -> None:
        """Stop watching (servers keep running; a replica adopts them) and disconnect."""
        watchers = list(self._watchers.values())
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        for executor in self._executors.values():
            await executor.close()
        self._executors.clear()
        await self._endpoints.close()


async def _empty() -> Any:
    yield b""
