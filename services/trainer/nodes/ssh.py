"""A remote node reached with asyncssh: commands, files over SFTP, processes started as
the run's own uid where the node has a pool of them (:mod:`services.trainer.ssh_runs`),
local port forwards for serving."""

from __future__ import annotations

import asyncio
import os
import posixpath
import shlex
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from services.trainer.nodes.base import (
    ISOLATED,
    Line,
    NodeExecutor,
    NodeProcess,
    json_text,
    merged_lines,
)
from services.trainer.ssh_runs import LEASE_SCRIPT, RELEASE_SCRIPT, START_SCRIPT, env_script
from shared.errors import ProviderError
from shared.events import NodeInfo
from shared.nodes import HostKeyPolicy, NodeAccess, open_connection, parse_jump

__all__ = ["SSHExecutor"]

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
        async for line in merged_lines(read(self.proc.stdout), read(self.proc.stderr)):
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
    """A remote node reached with asyncssh (``ssh_user@address:ssh_port``, optional jump),
    through :mod:`shared.nodes` (the same options and host-key policy as the provisioner).

    ``client_keys`` are private key paths of the platform (only those are offered). Host
    keys are checked against the keys announced with the node (``node.host_keys`` and
    ``node.proxy_host_keys``, the ones the provisioner pinned), else against
    ``known_hosts`` (a file; None: ``~/.ssh/known_hosts``, and no file means no host is
    trusted); only ``accept_unknown_host_keys=True`` (an explicit opt-in) skips the check,
    and only for a node announced without keys.
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
        #: how the node is reached: the one transport and host-key policy of shared.nodes
        #: (the trainer only checks pinned keys; it never records one)
        self.access = NodeAccess(
            host=node.address,
            port=node.ssh_port,
            user=node.ssh_user,
            jump=parse_jump(node.proxy) if node.proxy else None,
            identity_files=tuple(client_keys),
            known_hosts=known_hosts,
            # announced with the node (NodesReady): checked against exactly these, no file
            key_lines=node.host_keys,
            jump_key_lines=node.proxy_host_keys,
            # the opt-out is for hosts the platform knows no key of: a key the
            # provisioner announced is always checked
            host_keys=(
                HostKeyPolicy.UNCHECKED
                if accept_unknown_host_keys and not (node.host_keys or node.proxy_host_keys)
                else HostKeyPolicy.PINNED
            ),
            connect_timeout=connect_timeout,
            keepalive_interval=max(1.0, node_timeout / 3),
            keepalive_count=3,
        )
        self._conn: Any = None
        self._tunnel: Any = None
        self._forwards: dict[int, Any] = {}
        self._lock = asyncio.Lock()

    async def _connection(self) -> Any:
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return self._conn
            if self._tunnel is not None:  # the jump connection of a connection now closed
                self._tunnel.close()
                self._tunnel = None
            self._conn, self._tunnel = await open_connection(self.access, name=self.node.name)
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
            shlex.join([self.python, *ISOLATED, "-c", script]), input=json_text(wanted), check=True
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
            input=json_text(wanted),
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
