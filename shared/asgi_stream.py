"""An httpx transport to an in-process ASGI app that streams the answer as it is sent.

``httpx.ASGITransport`` returns a response only once the app has finished, its whole body
in memory: a token stream (server-sent events) would arrive all at once at the end. This
transport returns as soon as the app has sent its headers and hands each body message on
when the app sends it. Closing the response early tells the app the client is gone
(``http.disconnect``); an app that does not stop within ``grace`` seconds is cancelled.

Used by :func:`shared.internal.internal_client` with ``streaming=True`` (embedded mode).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import httpx

__all__ = ["StreamingASGITransport"]

_END = None


class StreamingASGITransport(httpx.AsyncBaseTransport):
    """Like ``httpx.ASGITransport``, but the body streams (see the module docstring)."""

    def __init__(
        self, app: Any, *, client: tuple[str, int] = ("127.0.0.1", 123), grace: float = 5.0
    ) -> None:
        self.app = app
        self.client = client
        self.grace = grace

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.AsyncByteStream):
            raise TypeError("StreamingASGITransport needs an async request body")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "headers": [(k.lower(), v) for (k, v) in request.headers.raw],
            "scheme": request.url.scheme,
            "path": request.url.path,
            "raw_path": request.url.raw_path.split(b"?")[0],
            "query_string": request.url.query,
            "server": (request.url.host, request.url.port),
            "client": self.client,
            "root_path": "",
        }
        body_chunks = request.stream.__aiter__()
        request_done = False
        started = asyncio.Event()
        gone = asyncio.Event()  # the client closed the response
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        head: dict[str, Any] = {}
        failure: list[BaseException] = []
        complete: list[bool] = []  # the app sent its last body message

        async def receive() -> dict[str, Any]:
            nonlocal request_done
            if request_done:
                await gone.wait()
                return {"type": "http.disconnect"}
            try:
                chunk = await body_chunks.__anext__()
            except StopAsyncIteration:
                request_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.request", "body": chunk, "more_body": True}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                head["status"] = message["status"]
                head["headers"] = message.get("headers", [])
                started.set()
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                if body and request.method != "HEAD" and not gone.is_set():
                    queue.put_nowait(bytes(body))
                if not message.get("more_body", False):
                    complete.append(True)
                    queue.put_nowait(_END)

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            except Exception as exc:
                failure.append(exc)
            finally:
                queue.put_nowait(_END)
                started.set()

        task = asyncio.create_task(run())
        waiter = asyncio.ensure_future(started.wait())
        try:
            await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            gone.set()
            task.cancel()
            raise
        finally:
            waiter.cancel()
        if "status" not in head:
            if failure:
                raise failure[0]
            raise httpx.RemoteProtocolError("the app finished without an answer", request=request)
        return httpx.Response(
            head["status"],
            headers=head["headers"],
            stream=_Body(queue, task, gone, failure, complete, self.grace),
            request=request,
        )


class _Body(httpx.AsyncByteStream):
    def __init__(
        self,
        queue: asyncio.Queue[bytes | None],
        task: asyncio.Task[None],
        gone: asyncio.Event,
        failure: list[BaseException],
        complete: list[bool],
        grace: float,
    ) -> None:
        self._queue, self._task, self._gone = queue, task, gone
        self._failure, self._complete, self._grace = failure, complete, grace
        self._ended = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (chunk := await self._queue.get()) is not _END:
            yield chunk
        self._ended = True
        if self._failure and not self._complete:  # a whole answer (a 500 page) is an answer
            raise httpx.ReadError(f"the app failed mid-answer: {self._failure[0]!r}")

    async def aclose(self) -> None:
        if self._task.done():
            return
        if self._ended:  # complete: let the app finish its background work
            return
        self._gone.set()  # the app sees http.disconnect; cancelled if it does not stop
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(self._task), self._grace)
        if not self._task.done():
            self._task.cancel()
