"""The in-process streaming transport: bodies arrive as the app sends them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from shared.asgi_stream import StreamingASGITransport
from shared.internal import internal_client, register_inproc, unregister_inproc


def make_app(state: dict[str, object]) -> FastAPI:
    app = FastAPI()

    @app.get("/slow")
    async def slow() -> StreamingResponse:
        async def tokens() -> AsyncIterator[bytes]:
            try:
                for i in range(5):
                    yield f"data: {i}\n\n".encode()
                    await asyncio.sleep(0.2)
                state["finished"] = True
            finally:
                state["closed"] = True

        return StreamingResponse(tokens(), media_type="text/event-stream")

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, object]:
        return {"got": (await request.body()).decode()}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    return app


async def test_first_chunk_arrives_before_the_app_finishes() -> None:
    state: dict[str, object] = {}
    async with httpx.AsyncClient(
        transport=StreamingASGITransport(make_app(state)), base_url="http://app"
    ) as client:
        started = time.monotonic()
        async with client.stream("GET", "/slow") as response:
            assert response.status_code == 200
            chunks = []
            async for chunk in response.aiter_bytes():
                chunks.append((time.monotonic() - started, chunk))
        assert [c for _, c in chunks][0] == b"data: 0\n\n"
        assert len(chunks) == 5
        assert chunks[0][0] < 0.5 < chunks[-1][0]  # the first came long before the last
        assert state.get("finished") is True

        # a plain request reads the whole body, a request body reaches the app
        r = await client.post("/echo", content=b"hello")
        assert r.json() == {"got": "hello"}


async def test_a_client_that_leaves_stops_the_app_and_errors_propagate() -> None:
    state: dict[str, object] = {}
    async with httpx.AsyncClient(
        transport=StreamingASGITransport(make_app(state), grace=2.0), base_url="http://app"
    ) as client:
        async with client.stream("GET", "/slow") as response:
            async for _ in response.aiter_bytes():
                break  # leave after the first chunk
        for _ in range(40):
            if state.get("closed"):
                break
            await asyncio.sleep(0.05)
        assert state.get("closed") is True and "finished" not in state

        # an app that fails answers what its error middleware sent (a 500), not a hang
        r = await client.get("/boom")
        assert r.status_code == 500


async def test_internal_client_streams_in_process_only_when_asked() -> None:
    state: dict[str, object] = {}
    register_inproc("stream-test", make_app(state))
    try:
        live = internal_client("inproc://stream-test", streaming=True)
        plain = internal_client("inproc://stream-test")
        assert isinstance(live._transport, StreamingASGITransport)  # noqa: SLF001
        assert isinstance(plain._transport, httpx.ASGITransport)  # noqa: SLF001
        await live.aclose()
        await plain.aclose()
    finally:
        unregister_inproc("stream-test")
