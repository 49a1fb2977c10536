"""The inference server processes of deployments: start, health, requests, kill.

Starting: stage the model (decrypted) into the deployment's workspace (``serve-model/``)
beside the server scripts, start ``replicas`` servers (:mod:`services.trainer.model_server`,
staged as ``src/serving_server.py``) with the node's python, wait for each one's port
file and for every replica's ``/v2/health/ready``. Requests reach a replica through
:class:`~services.trainer.serving.endpoints.ServerEndpoints` (a Unix socket in a local sandbox, a
forwarded loopback port with a token on SSH nodes).
"""

from __future__ import annotations

import asyncio
import json
import posixpath
import signal
import uuid
from typing import Any

import httpx

from services.trainer.models import Deployment, ModelVersion
from services.trainer.nodes.base import NodeExecutor
from services.trainer.nodes.factory import USER_HOSTS, node_executor
from services.trainer.serving.endpoints import ServerEndpoints
from services.trainer.serving.records import DeploymentRecords
from services.trainer.settings import TrainerSettings
from services.trainer.staging import stage_manifest, stage_sources
from shared.db import run_sync
from shared.errors import ProviderError
from shared.store import ArtifactStore

__all__ = ["Servers", "server_procs"]

#: What a server process gets for an environment (offline: it never fetches anything).
_SERVER_ENV = {
    "PYTHONUNBUFFERED": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
}


def server_procs(dep: Deployment) -> list[dict[str, Any]]:
    """One ``{"pid", "port"}`` per started replica (older rows: replica 0's columns)."""
    if dep.procs:
        return [dict(p) for p in dep.procs]
    if dep.pid or dep.port is not None:
        return [{"pid": dep.pid, "port": dep.port}]
    return []


async def _empty() -> Any:
    yield b""


class Servers:
    """The server processes of one trainer instance's deployments, and their nodes."""

    def __init__(
        self, settings: TrainerSettings, store: ArtifactStore, records: DeploymentRecords
    ) -> None:
        self.settings = settings
        self.store = store
        self.records = records
        self._executors: dict[uuid.UUID, NodeExecutor] = {}
        self.endpoints = ServerEndpoints(timeout=60)

    async def executor(self, dep: Deployment) -> NodeExecutor:
        """The executor of the deployment's node (one per deployment, kept)."""
        executor = self._executors.get(dep.id)
        if executor is None:
            node = dep.node or {}
            # A user's host is checked against the key pinned for the run's owner (one
            # read per deployment: the executor is kept below)
            owner = (
                await run_sync(self.records.run_owner, dep)
                if node.get("provider") == USER_HOSTS
                else None
            )
            executor = node_executor(
                node, self.settings, tenant=dep.run_id or dep.model_id, owner=owner
            )
            self._executors[dep.id] = executor
        return executor

    def drop_executor(self, dep_id: uuid.UUID) -> NodeExecutor | None:
        """Forget the deployment's executor (it moved, or stopped); the caller closes it."""
        return self._executors.pop(dep_id, None)

    async def close(self) -> None:
        """Disconnect from every node and endpoint."""
        for executor in self._executors.values():
            await executor.close()
        self._executors.clear()
        await self.endpoints.close()

    async def kill(self, dep: Deployment, executor: NodeExecutor) -> None:
        """SIGTERM every replica's process group, SIGKILL what is left after a moment."""
        pids = [int(p["pid"]) for p in server_procs(dep) if p.get("pid")]
        if dep.pid and dep.pid not in pids:
            pids.append(dep.pid)
        if not pids:
            return
        for pid in pids:
            await executor.kill_group(pid, signal.SIGTERM)
        await asyncio.sleep(0.5)
        for pid in pids:
            await executor.kill_group(pid, signal.SIGKILL)

    async def start(self, dep: Deployment, model: ModelVersion) -> None:
        """Start ``dep.replicas`` servers on the staged model and wait until every one is
        ready (``dep.port``/``dep.procs`` set, the row updated as they start); on any error
        the started ones are killed."""
        executor = await self.executor(dep)
        ws = dep.workdir or ""
        for p in server_procs(dep):
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
        await self.endpoints.forget(dep.id)
        await executor.write_chunks(posixpath.join(ws, "serve", ".keep"), _empty())
        procs: list[dict[str, Any]] = []
        port_files: list[str] = []
        try:
            for replica in range(max(1, dep.replicas)):
                suffix = "" if replica == 0 else f"-{replica}"
                port_file = posixpath.join(ws, "serve", f"server{suffix}.json")
                await executor.remove_tree(port_file)
                reach = await self.endpoints.server_args(dep.id, executor, ws, replica=replica)
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
                proc = await executor.start(argv, cwd=ws, env=dict(_SERVER_ENV))
                procs.append({"pid": proc.pgid, "port": None})
                port_files.append(port_file)
                await run_sync(
                    self.records.update, dep.id, pid=procs[0]["pid"], procs=[dict(p) for p in procs]
                )
            await self._wait_ports(executor, procs, port_files)
            await run_sync(
                self.records.update, dep.id, port=procs[0]["port"], procs=[dict(p) for p in procs]
            )
            dep.port, dep.procs = procs[0]["port"], procs
            for _ in range(50):
                if await self.healthy(dep):
                    break
                await asyncio.sleep(0.2)
            else:
                raise ProviderError("inference server never became ready", retryable=True)
        except BaseException:
            for proc_info in procs:
                await executor.kill_group(int(proc_info["pid"]), signal.SIGKILL)
            raise

    async def _wait_ports(
        self, executor: NodeExecutor, procs: list[dict[str, Any]], port_files: list[str]
    ) -> None:
        """Fill each replica's ``port`` from its port file (0: a socket), within
        ``trainer_serving_start_timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.trainer_serving_start_timeout
        for proc_info, port_file in zip(procs, port_files, strict=True):
            while proc_info["port"] is None:
                if loop.time() > deadline:
                    raise ProviderError("inference server did not start in time", retryable=True)
                if port_file in await executor.existing([port_file]):
                    raw = b"".join([c async for c in executor.read_chunks(port_file)])
                    proc_info["port"] = int(json.loads(raw).get("port") or 0)  # 0: a socket
                else:
                    await asyncio.sleep(0.3)

    async def call(
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
        """One request to one replica's server."""
        procs = server_procs(dep)
        port = procs[replica]["port"] if replica < len(procs) else dep.port
        return await self.endpoints.request(
            method,
            path,
            dep_id=dep.id,
            executor=await self.executor(dep),
            workspace=dep.workdir or "",
            port=port,
            json=json,
            timeout=timeout,
            replica=replica,
            content=content,
            stream=stream,
        )

    async def healthy(self, dep: Deployment) -> bool:
        """Every replica answers ``/v2/health/ready``."""
        procs = server_procs(dep)
        if not procs or any(p.get("port") is None for p in procs):
            return False
        for replica in range(len(procs)):
            try:
                response = await self.call(
                    dep, "GET", "/v2/health/ready", timeout=5, replica=replica
                )
            except (httpx.HTTPError, OSError, ProviderError):
                return False
            if response.status_code != 200:
                return False
        return True
