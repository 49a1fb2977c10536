"""A minimal WebSocket client (RFC 6455) for the fan-out bench's subscribers.

The bench runs its 100 subscribers on the same 2 cores as the gateway it measures; with a
full client library they took more CPU than the gateway itself. This client does only
what a subscriber needs — the upgrade, masked text frames out, text frames in (fragments
joined), pings answered, a close — on raw asyncio streams, like the minimal HTTP client
of ``test_gateway_rps.py``. No extension is offered, so frames arrive uncompressed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from urllib.parse import urlsplit

__all__ = ["ConnectionClosed", "MiniWebSocket"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x1, 0x2, 0x8, 0x9, 0xA


class ConnectionClosed(Exception):
    """The server closed the connection (its close code, if it sent one)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"closed by the server (code {code})")
        self.code = code


class MiniWebSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def connect(cls, url: str) -> MiniWebSocket:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 24)
        key = base64.b64encode(os.urandom(16))
        writer.write(
            f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        if not head.startswith(b"HTTP/1.1 101") or accept not in head:
            writer.close()
            raise ConnectionError(f"no WebSocket upgrade: {head[:200]!r}")
        return cls(reader, writer)

    async def send(self, text: str) -> None:
        self._frame(_TEXT, text.encode())
        await self._writer.drain()

    async def recv(self) -> str:
        """The next text (or binary) message, decoded."""
        parts: list[bytes] = []
        while True:
            head = await self._reader.readexactly(2)
            fin, opcode, length = head[0] & 0x80, head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self._reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self._reader.readexactly(8))
            payload = await self._reader.readexactly(length) if length else b""
            if opcode == _PING:
                self._frame(_PONG, payload)
                continue
            if opcode == _PONG:
                continue
            if opcode == _CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise ConnectionClosed(code)
            parts.append(payload)  # text, binary or a continuation of one
            if fin:
                return b"".join(parts).decode()

    async def close(self) -> None:
        try:
            self._frame(_CLOSE, struct.pack("!H", 1000))
            await self._writer.drain()
        except ConnectionError:
            pass
        self._writer.close()

    def _frame(self, opcode: int, payload: bytes) -> None:
        """Write one final, masked frame (a client must mask what it sends)."""
        size = len(payload)
        if size < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
        elif size < 1 << 16:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
        mask = os.urandom(4)
        repeated = (mask * (size // 4 + 1))[:size]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
            size, "big"
        )
        self._writer.write(head + mask + masked)
