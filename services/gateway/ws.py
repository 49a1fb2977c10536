"""``/api/ws``: the WebSocket status stream of docs/design.md §6.

Protocol (client → server): first ``{"type": "auth", "token"}`` within
``ws_auth_timeout`` seconds, then any number of ``{"type": "subscribe", "project_id",
"after", "batch"?, "coalesce"?}``, ``{"type": "unsubscribe", "project_id"}``,
``{"type": "pong"}``.
Server → client: ``{"type": "authenticated", "user_id"}``, ``{"type": "subscribed",
"project_id", "seq": <latest stored>}``, ``{"type": "event", "seq", "event"}`` (backfill
after ``after``, then live, each seq once and in order), ``{"type": "ping"}``.

Optional, for clients that ask (both default false; see the service README):
``"batch": true`` on any subscribe lets the server send several queued messages as ONE
``{"type": "batch", "frames": [<message>, ...]}`` (the messages exactly as they would
be sent one by one, in order) for the rest of the connection; ``"coalesce": true`` on a
subscribe sends, of the ``TrainingProgress`` events of one run still waiting in this
client's queue, only the latest (the seqs of the skipped ones never arrive; every other
event still does, once and in order).
Close codes: 4401 not authenticated — also when the token expires without a fresh
``auth`` message and when the user's sessions are revoked —, 4403 origin refused, a token
without the ``read`` scope, or no role on the project (also when the role is removed while
subscribed; see :mod:`services.gateway.wsguard`), 1002 malformed message, 1013 too slow
to keep up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from services.gateway.deps import Gateway, authorize
from services.gateway.eventlog import latest_seqs_async
from services.gateway.fanout import Connection, Subscription
from services.gateway.identity import Identity
from services.gateway.scopes import WEBSOCKET, required_scope
from shared.db import run_sync
from shared.errors import AidpError, ClientError, Unauthenticated

__all__ = ["origin_allowed", "router"]

log = logging.getLogger(__name__)

router = APIRouter()

CLOSE_PROTOCOL = 1002
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
_MAX_MESSAGE = 16_384
_CLOSE_REASONS = {
    CLOSE_UNAUTHENTICATED: "session ended: authenticate again",
    CLOSE_FORBIDDEN: "access removed",
}


class _Close(Exception):
    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def origin_allowed(origin: str | None, *, host: str | None, allowed: list[str]) -> bool:
    """No Origin (not a browser), the same origin as ``host``, or one in ``allowed``."""
    if origin is None:
        return True
    if origin in allowed or "*" in allowed:
        return True
    netloc = urlsplit(origin).netloc
    return bool(netloc) and netloc == host


def _parse(raw: Mapping[str, Any]) -> dict[str, Any]:
    if raw.get("type") == "websocket.disconnect":
        raise WebSocketDisconnect(int(raw.get("code") or 1000))
    text = raw.get("text")
    if text is None and raw.get("bytes") is not None:
        try:
            text = raw["bytes"].decode()
        except UnicodeDecodeError:
            raise _Close(CLOSE_PROTOCOL, "messages are JSON text") from None
    if not isinstance(text, str) or len(text) > _MAX_MESSAGE:
        raise _Close(CLOSE_PROTOCOL, "messages are JSON text")
    try:
        message = json.loads(text)
    except ValueError:
        raise _Close(CLOSE_PROTOCOL, "malformed JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise _Close(CLOSE_PROTOCOL, "a message is an object with a type")
    return message


async def _verify(gateway: Gateway, token: str) -> Identity:
    """The token's identity, which must hold the scope the stream needs (``read``)."""
    try:
        identity = await gateway.verifier.verify(token)
    except Unauthenticated:
        raise _Close(CLOSE_UNAUTHENTICATED, "invalid token") from None
    except AidpError:
        raise _Close(1011, "authentication unavailable") from None
    if required_scope(WEBSOCKET, "/api/ws") not in identity.scopes:
        raise _Close(CLOSE_FORBIDDEN, "insufficient_scope: this token lacks 'read'")
    return identity


async def _authenticate(websocket: WebSocket, gateway: Gateway) -> tuple[Identity, str]:
    try:
        raw = await asyncio.wait_for(websocket.receive(), gateway.settings.ws_auth_timeout)
    except TimeoutError:
        raise _Close(CLOSE_UNAUTHENTICATED, "authenticate first") from None
    message = _parse(raw)
    token = message.get("token")
    if message["type"] != "auth" or not isinstance(token, str):
        raise _Close(CLOSE_UNAUTHENTICATED, "the first message is {type: auth, token}")
    return await _verify(gateway, token), token


async def _subscribe(
    conn: Connection, gateway: Gateway, identity: Identity, message: dict[str, Any]
) -> None:
    after = message.get("after", 0)
    if after is None:
        after = 0
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise _Close(CLOSE_PROTOCOL, "after is a seq (integer >= 0)")
    try:
        project_id = uuid.UUID(str(message.get("project_id")))
    except ValueError:
        raise _Close(CLOSE_PROTOCOL, "project_id is a UUID") from None
    try:
        await run_sync(
            authorize, gateway.db, identity=identity, project_id=project_id, need="viewer"
        )
    except ClientError:
        raise _Close(CLOSE_FORBIDDEN, "no access to that project") from None
    options = {}
    for name in ("batch", "coalesce"):
        value = message.get(name, False)
        if not isinstance(value, bool):
            raise _Close(CLOSE_PROTOCOL, f"{name} is true or false")
        options[name] = value
    sub = Subscription(project_id=project_id, last_sent=after, coalesce=options["coalesce"])
    conn.batch = conn.batch or options["batch"]
    # Watch first (live frames are buffered in sub.pending), then read the latest seq:
    # an event committed in between is either at or below latest (backfilled) or buffered.
    conn.subs[project_id] = sub
    gateway.hub.watch(conn, project_id)
    latest = (await latest_seqs_async(gateway.db, [project_id])).get(project_id)
    if conn.subs.get(project_id) is not sub:
        return  # replaced by a newer subscribe meanwhile
    if latest is None:
        raise _Close(CLOSE_FORBIDDEN, "no access to that project")
    gateway.hub.known(project_id, latest)
    conn.activate(sub, latest=latest)


def _unsubscribe(conn: Connection, gateway: Gateway, message: dict[str, Any]) -> None:
    try:
        project_id = uuid.UUID(str(message.get("project_id")))
    except ValueError:
        raise _Close(CLOSE_PROTOCOL, "project_id is a UUID") from None
    if conn.subs.pop(project_id, None) is not None:
        gateway.hub.unwatch(conn, project_id)
    conn.control({"type": "unsubscribed", "project_id": str(project_id)})


async def _close(websocket: WebSocket, code: int, reason: str = "") -> None:
    if websocket.application_state == WebSocketState.DISCONNECTED:
        return
    try:
        await websocket.close(code=code, reason=reason[:120])
    except (RuntimeError, OSError):
        pass  # already closing


@router.websocket("/api/ws")
async def status_stream(websocket: WebSocket) -> None:
    gateway: Gateway = websocket.app.state.gateway
    settings = gateway.settings
    origin = websocket.headers.get("origin")
    if not origin_allowed(
        origin, host=websocket.headers.get("host"), allowed=settings.ws_allowed_origins
    ):
        await websocket.close(code=CLOSE_FORBIDDEN)  # before accept: an HTTP 403
        return
    await websocket.accept()
    metrics = gateway.metrics

    async def send(text: str) -> None:
        await websocket.send_text(text)

    async def close(code: int) -> None:
        await _close(websocket, code, _CLOSE_REASONS.get(code, "too slow"))

    conn = Connection(
        send=send,
        close=close,
        db=gateway.db,
        queue_size=settings.ws_send_queue,
        ping_interval=settings.ws_ping_interval,
        send_timeout=settings.ws_send_timeout,
        on_sent=metrics.relayed.inc,
        on_drop=gateway.hub.unwatch_all,
    )
    metrics.ws_clients.inc()
    try:
        identity, token = await _authenticate(websocket, gateway)
        gateway.guard.register(conn, identity, token)
        await websocket.send_text(
            json.dumps({"type": "authenticated", "user_id": str(identity.user_id)})
        )
        conn.start()
        while not conn.dropped:
            message = _parse(await websocket.receive())
            kind = message["type"]
            if kind == "subscribe":
                await _subscribe(conn, gateway, identity, message)
            elif kind == "unsubscribe":
                _unsubscribe(conn, gateway, message)
            elif kind == "auth":
                identity = await _reauthenticate(conn, gateway, identity, message)
            elif kind != "pong":
                raise _Close(CLOSE_PROTOCOL, f"unknown message type {kind!r}")
    except _Close as close_:
        gateway.hub.unwatch_all(conn)
        await conn.stop()
        await _close(websocket, close_.code, close_.reason)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # client went away (RuntimeError: receive after a close by the sender side)
    finally:
        gateway.guard.unregister(conn)
        gateway.hub.unwatch_all(conn)
        await conn.stop()
        metrics.ws_clients.dec()


async def _reauthenticate(
    conn: Connection, gateway: Gateway, current: Identity, message: dict[str, Any]
) -> Identity:
    """A fresh token on an open connection (before the first one expires): same user only;
    the socket's expiry moves to the new token's."""
    token = message.get("token")
    if not isinstance(token, str):
        raise _Close(CLOSE_PROTOCOL, "auth needs a token")
    identity = await _verify(gateway, token)
    if identity.user_id != current.user_id:
        raise _Close(CLOSE_UNAUTHENTICATED, "a connection stays with one user")
    gateway.guard.register(conn, identity, token)
    conn.control({"type": "authenticated", "user_id": str(identity.user_id)})
    return identity
