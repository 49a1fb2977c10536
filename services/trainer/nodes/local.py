"""The trainer's own machine as a node (provider ``local``): every process sandboxed.

Processes from tenant input start inside the run's bubblewrap sandbox
(:class:`LocalSandbox`); files are read and written in-process, confined to the node's
workdir, so no operation follows a symlink a tenant planted there
(:mod:`shared.sandbox.confined`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import posixpath
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.trainer.nodes.base import (
    Line,
    NodeExecutor,
    NodeProcess,
    merged_lines,
    safe_env,
)
from shared.errors import ProviderError
from shared.events import NodeInfo
from shared.sandbox import Sandboxes, SandboxPolicy, sandbox_argv, sandbox_env
from shared.sandbox.cgroups import oom_killed, remove_cgroup
from shared.sandbox.command import SandboxSpec
from shared.sandbox.confined import (
    ConfinementError,
    PendingWrite,
    confined_exists,
    confined_files,
    confined_link,
    confined_open,
    confined_remove,
    relative_to_root,
)
from shared.sandbox.netns import remove_netns
from shared.sandbox.sandboxes import RUN_USER

__all__ = ["LocalExecutor", "LocalProcess", "LocalSandbox", "host_name", "sandboxes_for"]


def _sha256_handle(fh: Any) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := fh.read(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


class LocalProcess(NodeProcess):
    def __init__(
        self, proc: asyncio.subprocess.Process, *, cgroup: Path | None = None, memory_mb: int = 0
    ) -> None:
        self.proc = proc
        self.pgid = proc.pid
        self.cgroup = cgroup
        self.memory_mb = memory_mb

    async def lines(self) -> AsyncIterator[Line]:
        async def read(stream: asyncio.StreamReader | None) -> AsyncIterator[str]:
            if stream is not None:
                while raw := await stream.readline():
                    yield raw.decode(errors="replace")

        async for line in merged_lines(read(self.proc.stdout), read(self.proc.stderr)):
            yield line

    async def wait(self) -> int | None:
        code = await self.proc.wait()
        if self.cgroup is not None:
            if oom_killed(self.cgroup):
                self.limit_hit = f"its memory limit ({self.memory_mb} MB, AIDP_SANDBOX_MEMORY_MB)"
            for _ in range(50):  # the pid namespace's last processes may still be exiting
                remove_cgroup(self.cgroup)
                if not self.cgroup.exists():
                    break
                await asyncio.sleep(0.1)
        return code


@dataclass(frozen=True)
class LocalSandbox:
    """How a local executor sandboxes what it starts: whose run (``tenant``), and whether
    the run's processes share one network namespace (training ranks) or each get an empty
    one (model servers)."""

    sandboxes: Sandboxes
    tenant: str
    shared_network: bool = False
    #: host names of the run's other nodes (reachable on the shared loopback)
    peers: tuple[str, ...] = ()
    #: workspace folders the platform staged: read-only inside the sandbox
    protected: tuple[str, ...] = ("src", "model", "data", "resume", "cache", "serve-model")


class LocalExecutor(NodeExecutor):
    """The trainer's own machine (provider ``local``).

    Processes from tenant input start inside :class:`LocalSandbox`'s sandbox. Files are
    read and written in-process, confined to the node's workdir: no operation follows a
    symlink a tenant planted there (:mod:`shared.sandbox.confined`).
    """

    def __init__(self, node: NodeInfo, *, sandbox: LocalSandbox | None = None) -> None:
        super().__init__(node)
        self.sandbox = sandbox

    @property
    def root(self) -> str:
        return self.node.workdir

    def _confined(self, path: str) -> str:
        try:
            relative_to_root(self.root, path)
        except ConfinementError as exc:
            raise ProviderError(f"refused: {exc}") from exc
        return path

    async def _sandboxed(
        self, argv: Sequence[str], *, cwd: str, env: Mapping[str, str], purpose: str
    ) -> tuple[list[str], dict[str, str], SandboxSpec | None]:
        """``argv`` wrapped in the sandbox, the environment to start the wrapper with, and
        the sandbox (None when unsandboxed)."""
        if self.sandbox is None:
            return list(argv), safe_env(env), None
        box = self.sandbox
        spec = await asyncio.to_thread(
            box.sandboxes.prepare,
            tenant=box.tenant,
            workspace=cwd,
            python=argv[0],
            protected=[posixpath.join(cwd, p) for p in box.protected],
            shared_network=box.shared_network,
            gpu=(self.node.accelerator or "") == "cuda",
            cgroup_name=f"{box.tenant[:12]}-{purpose}-{uuid.uuid4().hex[:8]}",
            hostname=host_name(self.node.name),  # torchrun tells nodes apart by host name
            peers=box.peers,
        )
        inner = {
            **{k: os.environ[k] for k in ("LANG", "LC_ALL") if k in os.environ},
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": posixpath.join(cwd, "home"),
            "USER": RUN_USER,
            "LOGNAME": RUN_USER,
            "TMPDIR": "/tmp",
            **({"CUDA_VISIBLE_DEVICES": os.environ["CUDA_VISIBLE_DEVICES"]}
               if "CUDA_VISIBLE_DEVICES" in os.environ else {}),
            **env,
        }  # fmt: skip
        # bwrap's own PATH finds nsenter/prlimit; the program inherits the same variables
        inner.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        return sandbox_argv(spec, argv), sandbox_env(inner), spec

    async def run(self, argv: Sequence[str], *, timeout: float = 120) -> tuple[int, str, str]:
        if self.sandbox is not None:
            scratch = posixpath.join(self.root, ".aidp-probe")
            await asyncio.to_thread(os.makedirs, scratch, exist_ok=True)
            argv, env, spec = await self._sandboxed(argv, cwd=scratch, env={}, purpose="probe")
        else:
            env, spec = safe_env({}), None
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        finally:
            if spec is not None:
                remove_cgroup(spec.cgroup)
        return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")

    async def _run_stdin(self, argv: Sequence[str], data: str) -> None:
        raise NotImplementedError("local file operations run in-process")

    async def link_files(self, pairs: Sequence[tuple[str, str]]) -> None:
        def link_all() -> None:
            for source, dest in pairs:
                confined_link(self.root, source, dest)

        try:
            await asyncio.to_thread(link_all)
        except ConfinementError as exc:
            raise ProviderError(f"refused to stage into {self.node.name}: {exc}") from exc

    async def start(self, argv: Sequence[str], *, cwd: str, env: Mapping[str, str]) -> NodeProcess:
        command, outer, spec = await self._sandboxed(
            argv, cwd=self._confined(cwd), env=env, purpose="proc"
        )
        proc = await asyncio.create_subprocess_exec(
            *command,
            cwd=cwd,
            env=outer,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            limit=1 << 20,
        )
        if spec is None:
            return LocalProcess(proc)
        memory = self.sandbox.sandboxes.policy.memory_mb if self.sandbox else None
        return LocalProcess(proc, cgroup=spec.cgroup, memory_mb=memory or 0)

    async def kill_group(self, pgid: int, sig: int = signal.SIGTERM) -> None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    async def write_chunks(self, path: str, chunks: AsyncIterator[bytes]) -> None:
        try:
            pending = await asyncio.to_thread(PendingWrite, self.root, path)
        except ConfinementError as exc:
            raise ProviderError(f"refused to write {path}: {exc}") from exc
        try:
            async for chunk in chunks:
                await asyncio.to_thread(pending.write, chunk)
        except BaseException:
            pending.abort()
            raise
        await asyncio.to_thread(pending.commit)

    async def read_chunks(self, path: str) -> AsyncIterator[bytes]:
        try:
            fd = await asyncio.to_thread(confined_open, self.root, path)
        except ConfinementError as exc:
            raise ProviderError(f"refused to read {path}: {exc}") from exc
        with os.fdopen(fd, "rb") as fh:
            while chunk := await asyncio.to_thread(fh.read, 1 << 20):
                yield chunk

    async def existing(self, paths: Iterable[str]) -> set[str]:
        wanted = list(paths)
        return await asyncio.to_thread(lambda: {p for p in wanted if confined_exists(self.root, p)})

    async def hash_files(self, paths: Iterable[str]) -> dict[str, tuple[str, int]]:
        wanted = list(paths)

        def digest_all() -> dict[str, tuple[str, int]]:
            out = {}
            for path in wanted:
                with os.fdopen(confined_open(self.root, path), "rb") as fh:
                    out[path] = _sha256_handle(fh)
            return out

        try:
            return await asyncio.to_thread(digest_all)
        except ConfinementError as exc:
            raise ProviderError(f"refused to read from {self.node.name}: {exc}") from exc

    async def list_files(self, root: str) -> list[str]:
        try:
            return await asyncio.to_thread(confined_files, self.root, root)
        except ConfinementError as exc:
            raise ProviderError(f"refused to list {root}: {exc}") from exc

    async def remove_tree(self, path: str) -> None:
        try:
            await asyncio.to_thread(confined_remove, self.root, path)
        except ConfinementError as exc:
            raise ProviderError(f"refused to remove {path}: {exc}") from exc

    async def free_port(self) -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    async def release(self) -> None:
        """Drop the run's network namespace (its processes are gone)."""
        if self.sandbox is not None and self.sandbox.shared_network:
            await asyncio.to_thread(remove_netns, self.sandbox.tenant)


def host_name(node_name: str) -> str:
    """A local node's host name inside its sandbox."""
    return f"aidp-{node_name}"


@functools.cache
def sandboxes_for(policy: SandboxPolicy) -> Sandboxes:
    """One :class:`Sandboxes` per policy (it remembers the host check)."""
    return Sandboxes(policy)
