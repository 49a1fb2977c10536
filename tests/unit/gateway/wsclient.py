"""A small WebSocket client for the status stream (tests and benchmarks)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

__all__ = ["ClientConnection", "authed", "close_code", "connect", "events", "subscribe"]


async def connect(url: str, *, origin: str | None = None) -> ClientConnection:
    headers = {"Origin": origin} if origin else None
    return await websockets.connect(url, additional_headers=headers, max_queue=None)


async def authed(url: str, token: str) -> ClientConnection:
    ws = await connect(url)
    await ws.send(json.dumps({"type": "auth", "token": token}))
    reply = json.loads(await ws.recv())
    assert reply["type"] == "authenticated", reply
    return ws


async def subscribe(ws: ClientConnection, project_id: str, after: int = 0) -> int:
    """Subscribe and return the ``seq`` of the ``subscribed`` reply."""
    await ws.send(json.dumps({"type": "subscribe", "project_id": project_id, "after": after}))
    while True:
        message = json.loads(await ws.recv())
        if message["type"] == "subscribed":
            return int(message["seq"])
        if message["type"] != "ping":
            raise AssertionError(f"unexpected before subscribed: {message}")


async def events(ws: ClientConnection, count: int, *, timeout: float = 10) -> list[dict[str, Any]]:
    """The next ``count`` event frames (pings skipped)."""
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while len(out) < count:
            message = json.loads(await ws.recv())
            if message["type"] == "event":
                out.append(message)
    return out


async def close_code(ws: ClientConnection, *, timeout: float = 10) -> int | None:
    """Read until the server closes; return its close code."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except websockets.ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None
