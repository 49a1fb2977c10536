"""The node contract: running commands and moving files on a node.

:class:`NodeExecutor` is the contract staging, launching and serving code against; a node
from ``NodesReady`` becomes an executor through :func:`services.trainer.nodes.factory.executor_for`
(:mod:`.local`: the trainer's machine, sandboxed; :mod:`.ssh`: a remote node). Long-running
processes start in their own process group (local: a new session; SSH: sshd makes every
session a process-group leader), so :meth:`NodeExecutor.kill_group` stops a whole torchrun
tree, even one left over by a crashed trainer (its group id is kept in the database).
"""

from __future__ import annotations

import asyncio
import os
import signal
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.events import NodeInfo

__all__ = [
    "ISOLATED",
    "Line",
    "NodeExecutor",
    "NodeProcess",
    "json_text",
    "merged_lines",
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
        await self._run_stdin([self.python, *ISOLATED, "-c", script], json_text(pairs))

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


def json_text(value: Any) -> str:
    """``value`` as JSON (a helper script's stdin)."""
    import json

    return json.dumps(value)


async def merged_lines(
    stdout: AsyncIterator[str], stderr: AsyncIterator[str]
) -> AsyncIterator[Line]:
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
