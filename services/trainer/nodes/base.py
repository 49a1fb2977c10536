"""Running commands and moving files on a node: local processes or SSH (asyncssh).

:class:`NodeExecutor` is the contract staging, launching and serving code against; a node
from ``NodesReady`` becomes an executor through :func:`executor_for`. Long-running
processes start in their own process group (local: a new session; SSH: sshd makes every
session a process-group leader), so :meth:`NodeExecutor.kill_group` stops a whole torchrun
tree, even one left over by a crashed trainer (its group id is kept in the database).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import posixpath
import shlex
import signal
import socket
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.trainer.settings import TrainerSettings
from services.trainer.ssh_runs import LEASE_SCRIPT, RELEASE_SCRIPT, START_SCRIPT, env_script
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

__all__ = [
    "ISOLATED",
    "LocalExecutor",
    "LocalSandbox",
    "NodeExecutor",
    "NodeProcess",
    "SSHExecutor",
    "executor_for",
    "node_executor",
    "safe_env",
]

#: Interpreter flags for the platform's own helper scripts run with a run environment's
#: python outside the sandbox (as the platform or the node's login user): isolated mode and
#: no ``site``, so no ``.pth`` file or package a tenant installed into that environment runs
#: with the platform's privileges. The scripts use the standard library only.
ISOLATED = ("-I", "-S")

#: Variables of the trainer's own environment that a node process may inherit.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "CUDA_VISIBLE_DEVICES")


def safe_env(extra: Mapping[str, str]) -> dict[str, str]:
    """A minimal environment for node processes: never the trainer's secrets."""
    env = {k: os.environ[k] for k in _INHERITED if k in os.environ}
    env.update(extra)
    return env


@dataclass
class Line:
    """One output line of a node process."""

    stream: str  # "stdout" | "stderr"
    text: str


class NodeProcess(ABC):
    """A long-running process on a node; ``pgid`` identifies its process group.

    ``limit_hit`` names the sandbox limit that killed it, once :meth:`wait` knows."""

    pgid: int
    limit_hit: str | None = None

    @abstractmethod
    def lines(self) -> AsyncIterator[Line]:
        """Its stdout and stderr lines, interleaved, until both close."""

    @abstractmethod
    async def wait(self) -> int | None:
        """Exit status; negative for a signal; None when the node connection was lost."""


class NodeExecutor(ABC):
    """Commands and files on one node. Paths are the node's (POSIX) paths.

    Every method may raise :class:`ProviderError` (retryable) when the node is unreachable.
    """

    def __init__(self, node: NodeInfo) -> None:
        self.node = node

    @property
    def python(self) -> str:
        return self.node.python or "python3"

    @abstractmethod
    async def run(self, argv: Sequence[str], *, timeout: float = 120) -> tuple[int, str, str]:
        """Run a short command; returns (exit status, stdout, stderr)."""

    @abstractmethod
    async def start(self, argv: Sequence[str], *, cwd: str, env: Mapping[str, str]) -> NodeProcess:
        """Start a long-running process in a new process group; returns at once."""

    @abstractmethod
    async def kill_group(self, pgid: int, sig: int = signal.SIGTERM) -> None:
        """Signal a process group; no error if it is gone."""

    @abstractmethod
    async def write_chunks(self, path: str, chunks: AsyncIterator[bytes]) -> None:
        """Write a file atomically (temp file + rename), creating parent folders."""

    @abstractmethod
    def read_chunks(self, path: str) -> AsyncIterator[bytes]:
        """Stream a file's bytes."""

    @abstractmethod
    async def existing(self, paths: Iterable[str]) -> set[str]:
        """Those of ``paths`` that exist."""

    @abstractmethod
    async def hash_files(self, paths: Iterable[str]) -> dict[str, tuple[str, int]]:
        """``path -> (sha256 hex, size)`` of each file, computed on the node."""

    async def link_files(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Hard-link (or copy) each ``(source, dest)``; dest folders are created."""
        script = (
            "import json,os,shutil,sys\n"
            "os.umask(0o77)\n"
            "for s,d in json.load(sys.stdin):\n"
            " os.makedirs(os.path.dirname(d),exist_ok=True)\n"
            " if os.path.lexists(d): os.remove(d)\n"
            " try: os.link(s,d)\n"
            " except OSError: shutil.copyfile(s,d)\n"
        )
        await self._run_stdin([self.python, *ISOLATED, "-c", script], _json(pairs))

    @abstractmethod
    async def _run_stdin(self, argv: Sequence[str], data: str) -> None: ...

    @abstractmethod
    async def list_files(self, root: str) -> list[str]:
        """Files under ``root`` as relative POSIX paths (empty if missing)."""

    @abstractmethod
    async def remove_tree(self, path: str) -> None: ...

    @abstractmethod
    async def free_port(self) -> int:
        """A TCP port free on the node (for a rendezvous or a server)."""

    async def connect_address(self, port: int) -> tuple[str, int]:
        """Where this process reaches ``port`` on the node (SSH: a local forward)."""
        return self.node.address, port

    async def close(self) -> None:  # noqa: B027 - optional hook, nothing to release locally
        """Release connections."""

    async def abort(self) -> None:
        """Drop connections at once, without a goodbye to a node that no longer answers."""
        await self.close()

    async def release(self) -> None:  # noqa: B027 - optional hook
        """Release what the node held for the run once its processes are gone."""


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def _sha256_handle(fh: Any) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := fh.read(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


#: Run by the node's python: JSON list of paths on stdin -> {path: [sha256, size]}.
_HASH_SCRIPT = (
    "import hashlib,json,sys\n"
    "out={}\n"
    "for p in json.load(sys.stdin):\n"
    " h=hashlib.sha256();n=0\n"
    " with open(p,'rb') as f:\n"
    "  while True:\n"
    "   b=f.read(1<<20)\n"
    "   if not b: break\n"
    "   h.update(b);n+=len(b)\n"
    " out[p]=[h.hexdigest(),n]\n"
    "print(json.dumps(out))"
)


async def _merged(stdout: AsyncIterator[str], stderr: AsyncIterator[str]) -> AsyncIterator[Line]:
    """Lines of both streams as they arrive, tagged with their stream, until both end."""
    queue: asyncio.Queue[Line | None] = asyncio.Queue()

    async def pump(stream: AsyncIterator[str], name: str) -> None:
        async for raw in stream:
            await queue.put(Line(name, raw.rstrip("\r\n")))
        await queue.put(None)

    tasks = [
        asyncio.ensure_future(pump(stdout, "stdout")),
        asyncio.ensure_future(pump(stderr, "stderr")),
    ]
    open_streams = len(tasks)
    try:
        while open_streams:
            item = await queue.get()
            if item is None:
                open_streams -= 1
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()


# -- local --------------------------------------------------------------------------------


class _LocalProcess(NodeProcess):
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

        async for line in _merged(read(self.proc.stdout), read(self.proc.stderr)):
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
            return _LocalProcess(proc)
        memory = self.sandbox.sandboxes.policy.memory_mb if self.sandbox else None
        return _LocalProcess(proc, cgroup=spec.cgroup, memory_mb=memory or 0)

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


# -- ssh ----------------------------------------------------------------------------------


class _SSHProcess(NodeProcess):
    def __init__(
        self,
        proc: Any,
        pgid: int,
        *,
        notice: str | None = None,
        on_exit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.proc = proc
        self.pgid = pgid
        self.notice = notice
        self.on_exit = on_exit

    async def lines(self) -> AsyncIterator[Line]:
        async def read(stream: Any) -> AsyncIterator[str]:
            try:
                async for raw in stream:
                    yield raw
            except Exception:  # connection lost: the stream just ends
                return

        if self.notice:
            yield Line("stderr", self.notice)
        async for line in _merged(read(self.proc.stdout), read(self.proc.stderr)):
            yield line

    async def wait(self) -> int | None:
        try:
            result = await self.proc.wait(check=False)
        except Exception:
            return None
        if self.on_exit is not None:
            try:
                await self.on_exit()
            except Exception:  # best effort: the next start hands the workspace over again
                pass
        if result.exit_signal:
            return -int(getattr(signal, "SIG" + str(result.exit_signal[0]), signal.SIGKILL))
        return result.exit_status


class SSHExecutor(NodeExecutor):
    """A remote node reached with asyncssh (``ssh_user@address:ssh_port``, optional jump).

    ``client_keys`` are private key paths of the platform. Host keys are checked against
    ``known_hosts`` (a file; None: ``~/.ssh/known_hosts``, and no file means no host is
    trusted); only ``accept_unknown_host_keys=True`` (an explicit opt-in) skips the check.
    """

    def __init__(
        self,
        node: NodeInfo,
        *,
        client_keys: Sequence[str] = (),
        known_hosts: str | None = None,
        accept_unknown_host_keys: bool = False,
        connect_timeout: float = 15,
        node_timeout: float = 30,
    ) -> None:
        super().__init__(node)
        #: keepalives every third of it, three unanswered close the connection: a node
        #: that stops answering (even without closing its connection) ends every stream
        self.node_timeout = node_timeout
        self.client_keys = list(client_keys)
        # asyncssh: None = no check, () = the default known_hosts file, a path = that file
        self.known_hosts: Any = None if accept_unknown_host_keys else (known_hosts or ())
        self.connect_timeout = connect_timeout
        self._conn: Any = None
        self._tunnel: Any = None
        self._forwards: dict[int, Any] = {}
        self._lock = asyncio.Lock()

    async def _connection(self) -> Any:
        import asyncssh

        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return self._conn
            options: dict[str, Any] = {
                "username": self.node.ssh_user,
                "port": self.node.ssh_port,
                "known_hosts": self.known_hosts,
                "connect_timeout": self.connect_timeout,
                "keepalive_interval": max(1.0, self.node_timeout / 3),
                "keepalive_count_max": 3,
            }
            if self.client_keys:
                options["client_keys"] = self.client_keys
            try:
                if self.node.proxy:
                    self._tunnel = await asyncssh.connect(
                        self.node.proxy,
                        known_hosts=self.known_hosts,
                        client_keys=self.client_keys or (),
                    )
                    options["tunnel"] = self._tunnel
                self._conn = await asyncssh.connect(self.node.address, **options)
            except (OSError, asyncssh.Error) as exc:
                raise ProviderError(
                    f"cannot reach node {self.node.name} over SSH: {exc}", retryable=True
                ) from exc
            return self._conn

    async def run(self, argv: Sequence[str], *, timeout: float = 120) -> tuple[int, str, str]:
        conn = await self._connection()
        result = await asyncio.wait_for(conn.run(shlex.join(argv), check=False), timeout)
        return result.exit_status or 0, str(result.stdout or ""), str(result.stderr or "")

    async def _run_stdin(self, argv: Sequence[str], data: str) -> None:
        conn = await self._connection()
        result = await conn.run(shlex.join(argv), input=data, check=False)
        if result.exit_status:
            raise ProviderError(f"command failed on {self.node.name}: {str(result.stderr)[-500:]}")

    @property
    def run_user(self) -> str | None:
        """The node's run user (None: processes run as the login user). Its group is the
        run group (the login user is a member, no run is); each run gets its own uid from
        the node's pool (:mod:`services.trainer.ssh_runs`)."""
        return self.node.run_user

    #: Shell prefix: ``$S`` runs a command as root (empty when the login user is root, else
    #: passwordless sudo, which node_base checked before it created the run user).
    _ROOT = '[ "$(id -u)" = 0 ] && S= || S="sudo -n"; '

    def _as_root(self, *commands: Sequence[str]) -> str:
        """A shell command line running each of ``commands`` as root, stopping at a failure."""
        return self._ROOT + " && ".join(f"$S {shlex.join(c)}" for c in commands)

    def _handback(self, workspace: str) -> str:
        """Shell commands giving ``workspace`` back to the login user, ``0700``: once the
        run's processes are gone nothing in it belongs to the run's uid."""
        ws = shlex.quote(workspace)
        return (
            f'{self._ROOT}o="$(id -u):$(id -g)" && $S chown -R -P "$o" {ws} && $S chmod 0700 {ws}'
        )

    def _is_workspace(self, path: str) -> bool:
        """Is ``path`` a run or deployment workspace of this node (it holds a uid lease)?"""
        name = posixpath.basename(path.rstrip("/"))
        return posixpath.dirname(path.rstrip("/")) == self.node.workdir.rstrip("/") and (
            name.startswith(("aidp-run-", "aidp-deploy-"))
        )

    async def start(self, argv: Sequence[str], *, cwd: str, env: Mapping[str, str]) -> NodeProcess:
        conn = await self._connection()
        user = self.run_user
        variables = dict(env)
        notice = None
        if user:
            variables.update({"HOME": posixpath.join(cwd, "home"), "USER": user, "LOGNAME": user})
        else:
            notice = (
                f"aidp: node {self.node.name}: runs as the login user (it cannot create a run"
                " user; grant passwordless sudo to isolate runs)"
            )
        # the environment (the owner's secrets among it) goes through stdin, never an argv
        exports = env_script(variables)
        program = f"sh -c {shlex.quote(START_SCRIPT)} sh {shlex.join(argv)}"
        # sshd puts every session in a new session/process group: $$ is the group id.
        if user:
            # as root: lease the workspace's own uid and hand the workspace to it; then
            # setpriv (util-linux): that uid and its own gid, no supplementary groups, no way
            # back up (no_new_privs)
            python_dir = posixpath.dirname(argv[0]) if argv and argv[0].startswith("/") else ""
            lease = shlex.join(["sh", "-c", LEASE_SCRIPT, "sh", cwd, user, user, python_dir])
            command = (
                f"echo @@pgid $$; {self._ROOT}ids=$($S {lease} </dev/null) || exit 126;"
                ' set -- $ids; [ "$1" = ids ] || exit 126;'
                f" cd {shlex.quote(cwd)} && exec $S setpriv --reuid=$2 --regid=$3"
                f" --clear-groups --no-new-privs -- {program}"
            )
        else:
            command = f"echo @@pgid $$; cd {shlex.quote(cwd)} && exec {program}"
        proc = await conn.create_process(f"sh -c {shlex.quote(command)}")
        proc.stdin.write(exports)
        proc.stdin.write_eof()
        first = await proc.stdout.readline()
        if not first.startswith("@@pgid "):
            raise ProviderError(f"could not start the process on {self.node.name}", retryable=True)
        on_exit = None
        if user:

            async def on_exit() -> None:
                await self.run(["sh", "-c", self._handback(cwd)], timeout=120)

        return _SSHProcess(proc, int(first.split()[1]), notice=notice, on_exit=on_exit)

    async def kill_group(self, pgid: int, sig: int = signal.SIGTERM) -> None:
        kill = ["kill", f"-{int(sig)}", "--", f"-{pgid}"]
        # the run user's processes: only root may signal them
        command = ["sh", "-c", self._as_root(kill)] if self.run_user else kill
        try:
            await self.run(command, timeout=15)
        except (ProviderError, TimeoutError):
            pass

    async def write_chunks(self, path: str, chunks: AsyncIterator[bytes]) -> None:
        conn = await self._connection()
        parent = os.path.dirname(path)
        # umask 077: a workspace the trainer creates is its own (0700) until handed over
        await conn.run(f"umask 077 && mkdir -p {shlex.quote(parent)}", check=True)
        tmp = f"{parent}/.{os.path.basename(path)}.tmp"
        async with conn.start_sftp_client() as sftp, sftp.open(tmp, "wb") as fh:
            async for chunk in chunks:
                await fh.write(chunk)
        await conn.run(f"mv -f {shlex.quote(tmp)} {shlex.quote(path)}", check=True)

    async def read_chunks(self, path: str) -> AsyncIterator[bytes]:
        conn = await self._connection()
        async with conn.start_sftp_client() as sftp, sftp.open(path, "rb") as fh:
            while chunk := await fh.read(1 << 20):
                yield chunk

    async def existing(self, paths: Iterable[str]) -> set[str]:
        wanted = list(paths)
        if not wanted:
            return set()
        script = (
            "import json,os,sys\n"
            "print(json.dumps([p for p in json.load(sys.stdin) if os.path.exists(p)]))"
        )
        conn = await self._connection()
        result = await conn.run(
            shlex.join([self.python, *ISOLATED, "-c", script]), input=_json(wanted), check=True
        )
        import json

        return set(json.loads(str(result.stdout)))

    async def hash_files(self, paths: Iterable[str]) -> dict[str, tuple[str, int]]:
        wanted = list(paths)
        if not wanted:
            return {}
        conn = await self._connection()
        result = await conn.run(
            shlex.join([self.python, *ISOLATED, "-c", _HASH_SCRIPT]),
            input=_json(wanted),
            check=False,
        )
        if result.exit_status:
            raise ProviderError(
                f"hashing files on {self.node.name} failed: {str(result.stderr)[-500:]}"
            )
        import json

        return {p: (d, int(n)) for p, (d, n) in json.loads(str(result.stdout)).items()}

    async def list_files(self, root: str) -> list[str]:
        code, out, _ = await self.run(
            ["sh", "-c", f"cd {shlex.quote(root)} 2>/dev/null && find . -type f"], timeout=60
        )
        return sorted(line[2:] for line in out.splitlines() if line.startswith("./"))

    async def remove_tree(self, path: str) -> None:
        remove: list[str] = ["rm", "-rf", "--", path]
        if self.run_user and self._is_workspace(path):
            # the workspace goes, and with it its uid lease (and what still runs as it)
            remove = ["sh", "-c", RELEASE_SCRIPT, "sh", path]
        # files the run's uid made may not be the login user's to remove
        code, _, err = await self.run(
            ["sh", "-c", self._as_root(remove)] if self.run_user else remove, timeout=120
        )
        if code:
            raise ProviderError(f"could not remove {path} on {self.node.name}: {err[-300:]}")

    async def free_port(self) -> int:
        code, out, err = await self.run(
            [
                self.python,
                *ISOLATED,
                "-c",
                "import socket;s=socket.socket();s.bind(('',0));print(s.getsockname()[1])",
            ]
        )
        if code:
            raise ProviderError(f"no free port on {self.node.name}: {err[-300:]}", retryable=True)
        return int(out.strip())

    async def connect_address(self, port: int) -> tuple[str, int]:
        if port not in self._forwards:
            conn = await self._connection()
            self._forwards[port] = await conn.forward_local_port("127.0.0.1", 0, "127.0.0.1", port)
        return "127.0.0.1", int(self._forwards[port].get_port())

    async def close(self) -> None:
        for listener in self._forwards.values():
            listener.close()
        self._forwards.clear()
        for conn in (self._conn, self._tunnel):
            if conn is not None:
                conn.close()
        self._conn = self._tunnel = None

    async def abort(self) -> None:
        for listener in self._forwards.values():
            listener.close()
        self._forwards.clear()
        for conn in (self._conn, self._tunnel):
            if conn is not None:
                conn.abort()  # closes the socket now: every stream of it ends
        self._conn = self._tunnel = None


def executor_for(
    node: NodeInfo,
    *,
    ssh_keys: Sequence[str] = (),
    known_hosts: str | None = None,
    accept_unknown_host_keys: bool = False,
    sandbox: LocalSandbox | None = None,
    node_timeout: float = 30,
) -> NodeExecutor:
    """The executor for a node: local for provider ``local``, SSH otherwise."""
    if node.provider == "local" and node.ssh_user is None:
        return LocalExecutor(node, sandbox=sandbox)
    return SSHExecutor(
        node,
        client_keys=ssh_keys,
        known_hosts=known_hosts,
        accept_unknown_host_keys=accept_unknown_host_keys,
        connect_timeout=min(15.0, node_timeout),
        node_timeout=node_timeout,
    )


def host_name(node_name: str) -> str:
    """A local node's host name inside its sandbox."""
    return f"aidp-{node_name}"


def node_executor(
    node: NodeInfo | Mapping[str, Any],
    settings: TrainerSettings,
    *,
    tenant: uuid.UUID | str,
    shared_network: bool = False,
    peers: Sequence[str] = (),
) -> NodeExecutor:
    """:func:`executor_for` with the trainer's SSH settings (keys, known_hosts, opt-in) and,
    for a local node, the sandbox of run ``tenant`` (``shared_network``: the run's ranks
    share one network namespace)."""
    info = node if isinstance(node, NodeInfo) else NodeInfo.model_validate(node)
    if info.provider == "local" and info.ssh_user is None and not settings.local_provider_allowed():
        raise ProviderError(
            "provider local is disabled in distributed mode (AIDP_ALLOW_LOCAL_PROVIDER=true"
            " allows it)"
        )
    known = settings.trainer_known_hosts
    return executor_for(
        info,
        ssh_keys=[str(p) for p in settings.trainer_ssh_keys],
        known_hosts=str(known) if known else None,
        accept_unknown_host_keys=settings.trainer_accept_unknown_host_keys,
        node_timeout=settings.trainer_node_timeout_seconds,
        sandbox=LocalSandbox(
            sandboxes_for(settings.sandbox_policy()),
            tenant=str(tenant),
            shared_network=shared_network,
            peers=tuple(host_name(p) for p in peers),
        ),
    )


@functools.cache
def sandboxes_for(policy: SandboxPolicy) -> Sandboxes:
    """One :class:`Sandboxes` per policy (it remembers the host check)."""
    return Sandboxes(policy)
