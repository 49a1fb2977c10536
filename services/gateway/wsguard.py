"""Re-authorisation of open WebSockets: a socket lives only as long as its session and the
user's access to what it watches.

Per process, :class:`SessionGuard` knows each authenticated connection's user, token and
expiry, and closes it:

- **4401** when its token expires without a fresh ``auth`` message (a timer per socket,
  moved by each re-authentication);
- **4401** when the user's sessions are revoked (``SessionsRevoked``, pushed to every
  replica): the token is verified again, which fails for a JWT issued before
  ``not_before`` and for a revoked API token (its cached introspection is dropped first);
- **4401** when the key that signed its token is revoked (``SigningKeyRevoked``);
- **4403** when the user loses access to a project it subscribes to (``MembershipChanged``,
  pushed to every replica by the gateway's member routes): the subscription is
  authorised again with :func:`services.gateway.deps.authorize`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from services.gateway.deps import authorize
from services.gateway.fanout import Connection
from services.gateway.identity import Identity, TokenVerifier
from shared.db import Database, run_sync
from shared.errors import AidpError, ClientError, Unauthenticated

__all__ = ["CLOSE_FORBIDDEN", "CLOSE_UNAUTHENTICATED", "SessionGuard"]

log = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


@dataclass
class _Session:
    identity: Identity
    token: str
    expiry: asyncio.TimerHandle | None


class SessionGuard:
    """The authenticated WebSockets of this process, by user."""

    def __init__(self, verifier: TokenVerifier, db: Database) -> None:
        self._verifier = verifier
        self._db = db
        self._sessions: dict[Connection, _Session] = {}
        self._by_user: dict[uuid.UUID, set[Connection]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def register(self, conn: Connection, identity: Identity, token: str) -> None:
        """``conn`` is now authenticated as ``identity`` (first ``auth`` or a fresh one)."""
        self.unregister(conn)
        expiry = None
        if identity.expires_at is not None:
            delay = max(0.0, identity.expires_at - time.time())
            expiry = asyncio.get_running_loop().call_later(delay, conn.drop, CLOSE_UNAUTHENTICATED)
        self._sessions[conn] = _Session(identity, token, expiry)
        self._by_user.setdefault(identity.user_id, set()).add(conn)

    def unregister(self, conn: Connection) -> None:
        session = self._sessions.pop(conn, None)
        if session is None:
            return
        if session.expiry is not None:
            session.expiry.cancel()
        conns = self._by_user.get(session.identity.user_id)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self._by_user[session.identity.user_id]

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- pushes (called from the broadcast handlers; never block) ------------------------

    def on_revoked(self, user_id: uuid.UUID, _not_before: float) -> None:
        for conn in list(self._by_user.get(user_id, ())):
            self._spawn(self._recheck_session(conn))

    def on_key_revoked(self, kid: str) -> None:
        """Refuse ``kid``'s tokens from now on and close the sockets they opened."""
        self._verifier.revoke_key(kid)
        for conn, session in list(self._sessions.items()):
            if session.identity.kid == kid:
                conn.drop(CLOSE_UNAUTHENTICATED)

    def on_membership_changed(self, project_id: uuid.UUID, user_id: uuid.UUID) -> None:
        for conn in list(self._by_user.get(user_id, ())):
            if project_id in conn.subs:
                self._spawn(self._recheck_project(conn, project_id))

    async def _recheck_session(self, conn: Connection) -> None:
        session = self._sessions.get(conn)
        if session is None:
            return
        try:
            await self._verifier.verify(session.token)
        except Unauthenticated:
            conn.drop(CLOSE_UNAUTHENTICATED)
        except AidpError as exc:  # auth unreachable: keep the socket, the expiry still holds
            log.warning("could not re-verify a WebSocket session: %r", exc)

    async def _recheck_project(self, conn: Connection, project_id: uuid.UUID) -> None:
        session = self._sessions.get(conn)
        if session is None:
            return
        try:
            await run_sync(
                authorize, self._db, identity=session.identity, project_id=project_id, need="viewer"
            )
        except ClientError:
            conn.drop(CLOSE_FORBIDDEN)
