"""Revoked sessions as this gateway process knows them: per user, the oldest ``iat`` an
access token may still carry (``not_before``).

Two sources keep it current:

- the push: auth publishes ``SessionsRevoked {user_id, not_before}`` on logout, password
  change, refresh-token reuse or an admin's action; every gateway replica consumes it on a
  broadcast subscription of its own (``shared.bus``) and applies it at once;
- the pull: the first time a user shows up (and again once the entry is older than
  ``revocation_cache_seconds``) the process asks auth
  ``GET /internal/users/{id}/sessions`` → ``{"not_before": <ISO time or null>}``, so a
  replica that started (or lost its broker connection) after a revocation still knows it.

Listeners (the WebSocket hub, the API-token cache) are told of each push so they can drop
what the revocation killed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable

from services.gateway.downstream import Downstream
from shared.contracts.identity import user_sessions
from shared.errors import NotFound
from shared.events import Envelope, SessionsRevoked, parse_payload

__all__ = ["SessionRegistry"]

log = logging.getLogger(__name__)

_MAX_USERS = 65_536

Listener = Callable[[uuid.UUID, float], None]


class SessionRegistry:
    """``not_before`` per user (epoch seconds, ``None`` = nothing revoked)."""

    def __init__(self, auth: Downstream, *, cache_seconds: float) -> None:
        self.auth = auth
        self.cache_seconds = cache_seconds
        # user -> (not_before or None, fetched at monotonic)
        self._known: OrderedDict[uuid.UUID, tuple[float | None, float]] = OrderedDict()
        self._fetching: dict[uuid.UUID, asyncio.Future[float | None]] = {}
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> None:
        """Call ``listener(user_id, not_before)`` on every pushed revocation."""
        self._listeners.append(listener)

    def revoke(self, user_id: uuid.UUID, not_before: float) -> None:
        """Apply a revocation (never moves ``not_before`` back) and tell the listeners."""
        current = self._known.get(user_id, (None, 0.0))[0]
        merged = not_before if current is None else max(current, not_before)
        self._remember(user_id, merged)
        for listener in list(self._listeners):
            try:
                listener(user_id, merged)
            except Exception:
                log.exception("a session revocation listener failed")

    async def on_event(self, envelope: Envelope) -> None:
        """Broadcast handler of ``SessionsRevoked``."""
        payload = parse_payload(envelope)
        if isinstance(payload, SessionsRevoked):
            self.revoke(payload.user_id, payload.not_before.timestamp())

    async def not_before(self, user_id: uuid.UUID) -> float | None:
        """The user's ``not_before``: from memory, else asked of auth (concurrent askers
        share one request). Raises ``TransientError`` when auth cannot answer."""
        entry = self._known.get(user_id)
        if entry is not None and time.monotonic() - entry[1] < self.cache_seconds:
            return entry[0]
        pending = self._fetching.get(user_id)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(user_id))
            self._fetching[user_id] = pending
            pending.add_done_callback(lambda _f: self._fetching.pop(user_id, None))
        return await asyncio.shield(pending)

    async def _fetch(self, user_id: uuid.UUID) -> float | None:
        try:
            answer = await user_sessions(self.auth, user_id)
            fetched = answer.not_before.timestamp() if answer.not_before else None
        except NotFound:
            fetched = None  # an auth without the route yet, or a user it does not know
        # a push that arrived while asking wins if it is newer
        current = self._known.get(user_id, (None, 0.0))[0]
        if current is not None and (fetched is None or current > fetched):
            fetched = current
        self._remember(user_id, fetched)
        return fetched

    def _remember(self, user_id: uuid.UUID, not_before: float | None) -> None:
        self._known[user_id] = (not_before, time.monotonic())
        self._known.move_to_end(user_id)
        while len(self._known) > _MAX_USERS:
            self._known.popitem(last=False)
