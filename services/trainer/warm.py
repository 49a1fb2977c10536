"""Warm starts for single-process runs on local nodes: a spare sandbox prepared ahead.

A cold training process spends seconds importing torch and transformers before its first
step. For a built-in task on one local node with one process, the trainer keeps a *spare*:
a sandbox made exactly like a run's (its own leased uid, its own empty network namespace,
its own memory cgroup, the environment's venv read-only) whose interpreter has already
imported torch and transformers and waits on its stdin. A spare serves exactly one run
and is never reused: when a run claims it, the spare's workspace folder is renamed (on the
host) to the run's workspace, the run's files are staged into it, the workspace is handed
to the spare's uid again, and the run's environment and script arrive on the spare's stdin
(never on a command line); the interpreter then becomes the run's training process
(``runpy``), in the same process — so nothing of one run's state can reach another run,
and there is no fork of a process that has started threads.

Inside the sandbox the workspace keeps the spare's path (a bind mount follows the folder,
not its name): the run's ``AIDP_*`` paths point there; progress and checkpoint messages
carry paths relative to the workspace, which the trainer resolves against the run's own
workspace as always. Everything else — cancel (the process group), the memory limit, the
output, the exit status — is the same :class:`~services.trainer.nodes.base.NodeProcess` the cold
path returns. Runs that resume from a checkpoint, custom scripts and several processes or
nodes keep the cold launch.

The pool keeps at most ``AIDP_TRAINER_WARM_WORKERS`` spares per (node name, accelerator,
interpreter, parent of the node's workdir): spares wait in ``.aidp-warm/`` beside the
workdirs; a key gets its first spare once a run has used it. Spares are stopped when the host's
available memory falls below ``AIDP_TRAINER_WARM_MIN_AVAILABLE_MB`` and are never started
below it; ``AIDP_TRAINER_WARM_WORKERS=0`` turns warm starts off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import posixpath
import signal
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.trainer.nodes.base import NodeProcess
from services.trainer.nodes.local import LocalExecutor, LocalProcess, LocalSandbox
from services.trainer.warm_boot import (
    IMPORT_TIME_ENV,
    MAX_PRELOADED_KINDS,
    PROTECTED,
    READY,
    WARM_BOOT,
    available_memory_mb,
    model_type,
    remove_folder,
)
from shared.sandbox.cgroups import remove_cgroup
from shared.sandbox.command import SandboxSpec, sandbox_env
from shared.sandbox.sandboxes import hand_over

__all__ = ["WarmPool", "WarmSpare"]

log = logging.getLogger(__name__)


@dataclass
class WarmSpare:
    """One spare sandbox: its folder (its workspace inside), process and sandbox."""

    key: tuple[str, str, str]
    folder: str
    proc: asyncio.subprocess.Process
    spec: SandboxSpec
    memory_mb: int
    ready: asyncio.Future[bool] = field(default_factory=asyncio.Future)

    def alive(self) -> bool:
        return self.proc.returncode is None and self.ready.done() and self.ready.result()


def _key(executor: LocalExecutor, python: str) -> tuple[str, str, str]:
    """Spares are interchangeable between runs whose node has the same name, accelerator
    and interpreter and whose workdirs share a parent (the local provider gives every run
    its own workdir under one folder)."""
    node = executor.node
    return (f"{node.name}|{node.accelerator or ''}", _spare_root(executor), python)


def _spare_root(executor: LocalExecutor) -> str:
    """Where spare folders wait: beside the node's workdir (the same file system, so a
    spare folder can be renamed into a run's workdir)."""
    return posixpath.join(posixpath.dirname(executor.root.rstrip("/")), ".aidp-warm")


class WarmPool:
    """Spares per (node name and accelerator, parent of the workdir, interpreter), bounded
    and dropped under memory pressure."""

    def __init__(self, *, size: int, min_available_mb: int) -> None:
        self.size = size
        self.min_available_mb = min_available_mb
        self._spares: dict[tuple[str, str, str], list[WarmSpare]] = {}
        self._starting: dict[tuple[str, str, str], int] = {}
        self._models: dict[tuple[str, str, str], tuple[str, ...]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.claimed = 0  #: runs started in a spare (for tests and benchmarks)
        self._watcher: asyncio.Task[None] | None = None

    #: How often the pool checks the host's available memory while it holds spares.
    WATCH_SECONDS = 2.0

    async def _watch_memory(self) -> None:
        """Stop every spare as soon as the host runs short of memory."""
        while any(self._spares.values()) or any(self._starting.values()):
            if available_memory_mb() < self.min_available_mb:
                log.warning("low memory: stopping %d warm spare(s)", self.count())
                self.release_all()
            self._prune()
            await asyncio.sleep(self.WATCH_SECONDS)

    def count(self) -> int:
        """Spares held (ready or importing)."""
        return sum(len(v) for v in self._spares.values())

    def eligible(self, executor: object, *, task: str, nnodes: int, nproc: int) -> bool:
        """Does a launch qualify: a built-in task, one local sandboxed process."""
        return (
            self.size > 0
            and isinstance(executor, LocalExecutor)
            and executor.sandbox is not None
            and task != "custom"
            and nnodes == 1
            and nproc == 1
        )

    # -- spares ----------------------------------------------------------------------------

    def replenish(
        self,
        executor: LocalExecutor,
        python: str,
        *,
        after: asyncio.Event | None = None,
        after_timeout: float = 60.0,
    ) -> None:
        """Start spares for the key in the background, up to the pool size; each waits
        for ``after`` (the claiming run's first progress: a spare importing torch beside
        a starting run would slow it down) or ``after_timeout`` seconds first."""
        key = _key(executor, python)
        have = len(self._spares.get(key, [])) + self._starting.get(key, 0)
        for _ in range(max(0, self.size - have)):
            if available_memory_mb() < self.min_available_mb:
                self.release_all()
                return
            self._starting[key] = self._starting.get(key, 0) + 1
            task = asyncio.ensure_future(
                self._start_spare(executor, python, key, after, after_timeout)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.ensure_future(self._watch_memory())

    def remember_model(self, executor: LocalExecutor, python: str, workspace: str) -> None:
        """Note the ``model_type`` of the model staged in ``workspace`` so that the key's
        next spares import that architecture's code too (the last few kinds are kept)."""
        kind = model_type(executor.root, posixpath.join(workspace, "model", "config.json"))
        if kind is None:
            return
        key = _key(executor, python)
        kinds = [k for k in self._models.get(key, ()) if k != kind]
        self._models[key] = (kind, *kinds)[:MAX_PRELOADED_KINDS]

    async def _start_spare(
        self,
        executor: LocalExecutor,
        python: str,
        key: Any,
        after: asyncio.Event | None,
        after_timeout: float,
    ) -> None:
        try:
            if after is not None:
                with contextlib.suppress(TimeoutError):  # not wait_for: see shared.outbox
                    async with asyncio.timeout(after_timeout):
                        await after.wait()
            if available_memory_mb() < self.min_available_mb:
                return
            spare = await self._spawn(executor, python, key)
        except Exception:
            log.exception("starting a warm spare for %s failed", key)
            return
        finally:
            self._starting[key] -= 1
        self._spares.setdefault(key, []).append(spare)
        try:
            line = await asyncio.wait_for(spare.proc.stdout.readline(), 600)  # type: ignore[union-attr]
            spare.ready.set_result(line.decode(errors="replace").startswith(READY))
        except (TimeoutError, OSError):
            spare.ready.set_result(False)
        # a spare dropped meanwhile (memory pressure, shutdown) was stopped on purpose
        if not spare.ready.result() and spare in self._spares.get(key, []):
            log.warning("a warm spare for %s did not become ready", key)
            await self._drop(spare)

    async def _spawn(self, executor: LocalExecutor, python: str, key: Any) -> WarmSpare:
        assert executor.sandbox is not None
        token = uuid.uuid4().hex
        folder = posixpath.join(_spare_root(executor), f"aidp-warm-{token}")

        def make() -> None:
            os.makedirs(posixpath.dirname(folder), mode=0o700, exist_ok=True)
            os.makedirs(folder, mode=0o700)
            for name in PROTECTED:
                os.makedirs(posixpath.join(folder, name), mode=0o755)

        await asyncio.to_thread(make)
        # the spare's own tenant: its own uid and no shared namespace with anything
        boxed = LocalExecutor(
            executor.node,
            sandbox=LocalSandbox(executor.sandbox.sandboxes, tenant=f"warm-{token}"),
        )
        env = {**IMPORT_TIME_ENV, "AIDP_WARM_PRELOAD": ",".join(self._models.get(key, ()))}
        command, outer, spec = await boxed._sandboxed(
            [python, "-u", "-c", WARM_BOOT], cwd=folder, env=env, purpose="warm"
        )
        assert spec is not None
        proc = await asyncio.create_subprocess_exec(
            *command,
            cwd=folder,
            env=outer,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            limit=1 << 20,
        )
        memory = executor.sandbox.sandboxes.policy.memory_mb or 0
        return WarmSpare(key, folder, proc, spec, memory)

    async def _drop(self, spare: WarmSpare) -> None:
        """Stop a spare and remove its folder."""
        with contextlib.suppress(ValueError):
            self._spares.get(spare.key, []).remove(spare)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(spare.proc.pid, signal.SIGKILL)
        await spare.proc.wait()
        remove_cgroup(spare.spec.cgroup)
        await asyncio.to_thread(remove_folder, spare.folder)

    def _prune(self) -> None:
        """Drop spares that exited while waiting (killed, out of memory)."""
        for spares in list(self._spares.values()):
            for spare in list(spares):
                if spare.proc.returncode is not None:
                    spares.remove(spare)
                    self._background(self._drop(spare))

    def _background(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def release_all(self) -> None:
        """Stop every spare (memory pressure, shutdown)."""
        for spares in list(self._spares.values()):
            for spare in list(spares):
                task = asyncio.ensure_future(self._drop(spare))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def abandon(self, spare: WarmSpare) -> None:
        """Stop a claimed spare whose run did not start (its folder is the run's now)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(spare.proc.pid, signal.SIGKILL)
        await spare.proc.wait()
        remove_cgroup(spare.spec.cgroup)

    def ready(self, executor: LocalExecutor, python: str) -> int:
        """How many ready spares the key has."""
        return sum(s.alive() for s in self._spares.get(_key(executor, python), []))

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        self.release_all()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- runs ------------------------------------------------------------------------------

    async def claim(self, executor: LocalExecutor, python: str, workspace: str) -> WarmSpare | None:
        """A ready spare for the key, its folder renamed to ``workspace`` (which must not
        exist yet); None when there is none (the run starts cold). The caller tops the key
        up with :meth:`replenish` once the run is under way."""
        key = _key(executor, python)
        if available_memory_mb() < self.min_available_mb:
            self.release_all()
            return None
        self._prune()
        for spare in list(self._spares.get(key, [])):
            if not spare.alive():
                continue
            if await asyncio.to_thread(os.path.lexists, workspace):
                return None  # an earlier attempt's workspace: start cold
            self._spares[key].remove(spare)
            await asyncio.to_thread(os.rename, spare.folder, workspace)
            self.claimed += 1
            return spare
        return None

    async def start(
        self,
        spare: WarmSpare,
        *,
        workspace: str,
        script: str,
        env: Mapping[str, str],
        threads: int = 0,
    ) -> NodeProcess:
        """Hand the staged workspace to the spare's uid and make the spare the run's
        process: ``env`` and ``script`` (paths inside the sandbox, under the spare's folder)
        go through its stdin."""
        await asyncio.to_thread(hand_over, workspace, spare.spec.uid)
        inner = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": posixpath.join(spare.folder, "home"),
            "USER": "aidp-run",
            "LOGNAME": "aidp-run",
            "TMPDIR": "/tmp",
            **{
                k: os.environ[k]
                for k in ("LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES")
                if k in os.environ
            },
            **env,
        }
        claim = {
            # what the tool chain in front of a cold start lets through to the program
            "env": sandbox_env(inner),
            "script": script,
            "src": posixpath.join(spare.folder, "src"),
            "threads": threads,
        }
        assert spare.proc.stdin is not None
        spare.proc.stdin.write(json.dumps(claim).encode() + b"\n")
        await spare.proc.stdin.drain()
        spare.proc.stdin.close()
        return LocalProcess(spare.proc, cgroup=spare.spec.cgroup, memory_mb=spare.memory_mb)
