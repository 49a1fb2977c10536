"""Login rate limiting with its state in the auth database (shared by every replica).

Each attempt inserts one row per bucket (client address, email) and commits *before*
counting, so concurrent attempts on different replicas always see each other: the limit is
never exceeded, at worst a racing attempt is refused that could have passed. Refused
attempts delete their rows again (they do not extend the lockout); successful logins
delete theirs (only failures and in-flight attempts count).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field

from sqlalchemy import delete, func
from sqlmodel import col, select

from services.auth.models import LoginAttempt
from shared.db import Database
from shared.errors import RateLimited

__all__ = ["LoginLimiter", "LoginTicket"]


@dataclass
class LoginTicket:
    """The rows one attempt holds; :meth:`LoginLimiter.succeeded` releases them."""

    ids: list[int] = field(default_factory=list)


class LoginLimiter:
    """At most ``per_address`` / ``per_email`` failed or in-flight logins per window."""

    def __init__(self, *, db: Database, per_address: int, per_email: int, window: int) -> None:
        self._db = db
        self._limits = {"addr": per_address, "email": per_email}
        self._window = window

    def _buckets(self, address: str, email: str) -> list[tuple[str, int]]:
        digest = hashlib.sha256(email.encode()).hexdigest()[:32]
        candidates = [
            (f"addr:{address[:90]}", self._limits["addr"]),
            (f"email:{digest}", self._limits["email"]),
        ]
        return [(bucket, limit) for bucket, limit in candidates if limit > 0]

    def acquire(self, *, address: str, email: str, now: float | None = None) -> LoginTicket:
        """Count this attempt or raise :class:`RateLimited` with a Retry-After in seconds."""
        buckets = self._buckets(address, email)
        ticket = LoginTicket()
        if not buckets:
            return ticket
        now = time.time() if now is None else now
        since = now - self._window
        with self._db.session() as session:
            session.execute(delete(LoginAttempt).where(col(LoginAttempt.at) < since - self._window))
            rows = [LoginAttempt(bucket=bucket, at=now) for bucket, _ in buckets]
            session.add_all(rows)
            session.commit()
            ticket.ids = [int(row.id) for row in rows if row.id is not None]
            retry_after = 0
            for bucket, limit in buckets:
                count, oldest = session.execute(
                    select(func.count(), func.min(LoginAttempt.at)).where(
                        LoginAttempt.bucket == bucket, col(LoginAttempt.at) >= since
                    )
                ).one()
                if count > limit:
                    retry_after = max(retry_after, math.ceil(oldest + self._window - now))
            if retry_after:
                self._release(session, ticket)
                session.commit()
                raise RateLimited(
                    "too many login attempts; try again later", retry_after=max(1, retry_after)
                )
        return ticket

    def succeeded(self, ticket: LoginTicket) -> None:
        """A successful login does not count against the limits."""
        if not ticket.ids:
            return
        with self._db.session() as session:
            self._release(session, ticket)
            session.commit()

    @staticmethod
    def _release(session: object, ticket: LoginTicket) -> None:
        session.execute(  # type: ignore[attr-defined]
            delete(LoginAttempt).where(col(LoginAttempt.id).in_(ticket.ids))
        )
