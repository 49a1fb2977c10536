"""Request body limits, enforced before and while a body is read (ASGI middleware).

:class:`BodyLimitMiddleware` answers ``413 too_large`` when

- the request's ``Content-Length`` exceeds the limit of its route: nothing is read;
- a body without a length (chunked) or lying about it grows past the limit: the count runs
  as the app reads, the read that crosses the limit raises :class:`BodyTooLarge` into the
  app (so a streaming consumer stops and cleans up), and whatever the app answers then is
  replaced by the 413.

The limit is ``upload_max_bytes`` for the paths in ``upload_paths`` (streamed uploads) and
``json_max_bytes`` for every other request. WebSocket and lifespan scopes pass untouched.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimitMiddleware", "BodyTooLarge", "install_body_limits", "too_large_body"]


class BodyTooLarge(Exception):  # noqa: N818 - reads as what happened, like httpx's names
    """Raised from ``receive`` when the body grows past its limit (the answer is 413)."""

    def __init__(self, limit: int, setting: str) -> None:
        super().__init__(f"request body exceeds {limit} bytes ({setting})")
        self.limit = limit
        self.setting = setting


def too_large_body(limit: int, setting: str) -> bytes:
    """The JSON error body of a 413 that names the limit and the setting that raises it."""
    message = (
        f"Request body too large: the limit is {_human(limit)} ({limit} bytes), set by {setting}."
    )
    return json.dumps({"error": {"code": "too_large", "message": message}}).encode()


def _human(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.4g} {unit}"
    return f"{n} bytes"


class BodyLimitMiddleware:
    """Bound every HTTP request body (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        json_max_bytes: int,
        upload_max_bytes: int,
        upload_paths: Collection[str] = (),
        json_setting: str = "AIDP_MAX_JSON_BYTES",
        upload_setting: str = "AIDP_MAX_UPLOAD_BYTES",
    ) -> None:
        self.app = app
        self.json_limit = (json_max_bytes, json_setting)
        self.upload_limit = (upload_max_bytes, upload_setting)
        self.upload_paths = frozenset(upload_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        limit, setting = self.upload_limit if path in self.upload_paths else self.json_limit
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _send_413(send, limit, setting)
            return
        guard = _BodyGuard(receive, send, limit, setting)
        try:
            await self.app(scope, guard.receive, guard.send)
        except BodyTooLarge:
            await guard.answer_413()
        except Exception:
            if not guard.exceeded:
                raise
            await guard.answer_413()  # the exceeded read surfaced as another error


class _BodyGuard:
    """One request's counting ``receive`` and the ``send`` that swaps the answer for a
    413 once the body went past the limit."""

    def __init__(self, receive: Receive, send: Send, limit: int, setting: str) -> None:
        self._receive = receive
        self._send = send
        self.limit = limit
        self.setting = setting
        self.received = 0
        self.exceeded = False
        self.started = False

    async def receive(self) -> Message:
        if self.exceeded:
            raise BodyTooLarge(self.limit, self.setting)
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self.exceeded = True
                raise BodyTooLarge(self.limit, self.setting)
        return message

    async def send(self, message: Message) -> None:
        if self.exceeded:
            # the app answered after its body read failed: the answer is our 413
            if message["type"] == "http.response.start":
                await self.answer_413()
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    async def answer_413(self) -> None:
        """Send the 413, unless an answer has already started."""
        if not self.started:
            self.started = True
            await _send_413(self._send, self.limit, self.setting)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_413(send: Send, limit: int, setting: str) -> None:
    body = too_large_body(limit, setting)
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def install_body_limits(app: Any, settings: Any, *, upload_paths: Collection[str] = ()) -> None:
    """Add :class:`BodyLimitMiddleware` to ``app`` with the service's ``max_json_bytes`` and
    ``max_upload_bytes`` settings (see :class:`shared.settings.BaseServiceSettings`)."""
    app.add_middleware(
        BodyLimitMiddleware,
        json_max_bytes=settings.max_json_bytes,
        upload_max_bytes=settings.max_upload_bytes,
        upload_paths=upload_paths,
    )
