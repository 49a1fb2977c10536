"""How the trainer reaches an inference server — and nobody else can.

A server on the local machine runs in its run's sandbox and listens on a Unix socket in
its deployment's workspace: its network namespace is empty, and no other tenant's sandbox
mounts that folder. The trainer connects through an fd of the folder it opened without
following symlinks (``/proc/self/fd/N/server.sock`` also keeps the path under the 107 bytes
a socket address holds). A server on a remote node listens on the node's loopback, reached
through an SSH forward, and requires a per-deployment bearer token that the trainer writes
into the deployment's workspace before the start.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import secrets
import stat
import uuid
from collections.abc import AsyncIterator

import httpx

from services.trainer.nodes.base import NodeExecutor
from services.trainer.nodes.local import LocalExecutor
from shared.errors import ProviderError
from shared.sandbox.confined import ConfinementError, confined_dir_fd

__all__ = ["ServerEndpoints"]

SOCKET_NAME = "server.sock"
TOKEN_NAME = "token"


def socket_name(replica: int) -> str:
    """Replica 0 listens on ``server.sock``, replica i on ``server-i.sock``."""
    return SOCKET_NAME if replica == 0 else f"server-{replica}.sock"


class ServerEndpoints:
    """HTTP clients of the inference servers, one per deployment."""

    def __init__(self, *, timeout: float = 60) -> None:
        self.timeout = timeout
        self._tcp = httpx.AsyncClient(timeout=timeout)
        self._unix: dict[tuple[uuid.UUID, int], tuple[int, httpx.AsyncClient]] = {}
        self._tokens: dict[uuid.UUID, str] = {}

    async def server_args(
        self, dep_id: uuid.UUID, executor: NodeExecutor, workspace: str, *, replica: int = 0
    ) -> list[str]:
        """Extra server arguments: the socket (local) or the token file (remote), written
        before the server starts (replica 0 writes the token; every replica shares it)."""
        serve = posixpath.join(workspace, "serve")
        if isinstance(executor, LocalExecutor):
            return ["--unix-socket", posixpath.join(serve, socket_name(replica))]
        if replica == 0 or dep_id not in self._tokens:
            token = secrets.token_urlsafe(32)
            await executor.write_chunks(posixpath.join(serve, TOKEN_NAME), _once(token.encode()))
            self._tokens[dep_id] = token
        return ["--token-file", posixpath.join(serve, TOKEN_NAME)]

    async def request(
        self,
        method: str,
        path: str,
        *,
        dep_id: uuid.UUID,
        executor: NodeExecutor,
        workspace: str,
        port: int | None,
        timeout: float | None = None,
        json: object = None,
        replica: int = 0,
        content: bytes | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """One request to the deployment's server ``replica`` (httpx errors propagate);
        ``port`` is that replica's. ``content``: a body sent as it is (JSON); ``stream``:
        the answer is returned unread (token streams) and the caller closes it."""
        headers = {"Content-Type": "application/json"} if content is not None else {}
        if isinstance(executor, LocalExecutor):
            client = self._unix_client(dep_id, executor, workspace, replica)
            url = f"http://model{path}"
        else:
            if port is None:
                raise ProviderError("the inference server has no port yet", retryable=True)
            host, local_port = await executor.connect_address(port)
            token = self._tokens.get(dep_id) or await self._read_token(dep_id, executor, workspace)
            client, url = self._tcp, f"http://{host}:{local_port}{path}"
            headers["Authorization"] = f"Bearer {token}"
        request = client.build_request(
            method,
            url,
            json=json,
            content=content,
            headers=headers,
            timeout=timeout or self.timeout,
        )
        return await client.send(request, stream=stream)

    def _unix_client(
        self, dep_id: uuid.UUID, executor: LocalExecutor, workspace: str, replica: int = 0
    ) -> httpx.AsyncClient:
        name = socket_name(replica)
        held = self._unix.get((dep_id, replica))
        if held is None:
            try:
                fd = confined_dir_fd(executor.root, posixpath.join(workspace, "serve"))
            except (ConfinementError, FileNotFoundError) as exc:
                raise ProviderError(f"inference server folder unusable: {exc}") from exc
            path = f"/proc/self/fd/{fd}/{name}"
            transport = httpx.AsyncHTTPTransport(uds=path)
            held = (fd, httpx.AsyncClient(transport=transport, timeout=self.timeout))
            self._unix[(dep_id, replica)] = held
        fd, client = held
        try:  # a socket, not a symlink a tenant swapped in
            mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
        except FileNotFoundError as exc:
            raise httpx.ConnectError("the inference server's socket is missing") from exc
        if not stat.S_ISSOCK(mode):
            raise ProviderError("the inference server's socket was replaced; refusing it")
        return client

    async def _read_token(self, dep_id: uuid.UUID, executor: NodeExecutor, workspace: str) -> str:
        raw = b"".join(
            [c async for c in executor.read_chunks(posixpath.join(workspace, "serve", TOKEN_NAME))]
        )
        token = raw.decode().strip()
        self._tokens[dep_id] = token
        return token

    async def forget(self, dep_id: uuid.UUID) -> None:
        """Drop the deployment's clients (after a stop or before a restart)."""
        self._tokens.pop(dep_id, None)
        for key in [k for k in self._unix if k[0] == dep_id]:
            fd, client = self._unix.pop(key)
            await client.aclose()
            with contextlib.suppress(OSError):
                os.close(fd)

    async def close(self) -> None:
        for dep_id in {k[0] for k in self._unix}:
            await self.forget(dep_id)
        await self._tcp.aclose()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
