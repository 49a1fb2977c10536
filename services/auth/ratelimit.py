"""Login (and registration) rate limiting with its state in the auth database (shared by
every replica).

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
    """Per client address: at most ``per_address`` failed or in-flight logins per window
    (a hard limit: one address guessing many accounts).

    Per email: a progressive delay, never a lockout. The first ``per_email`` failures are
    free; after that each attempt must wait ``delay_base * 2**(extra failures)`` seconds
    (at most ``delay_max``) after the previous one. A login from a known device (one that
    logged into this account before) skips the per-email delay altogether, so an attacker
    hammering the account cannot keep its owner out.
    """

    def __init__(
        self,
        *,
        db: Database,
        per_address: int,
        per_email: int,
        window: int,
        delay_base: int = 2,
        delay_max: int = 900,
    ) -> None:
        self._db = db
        self._per_address = per_address
        self._per_email = per_email
        self._window = window
        self._delay_base = delay_base
        self._delay_max = delay_max
        # Failures older than this no longer grow the delay.
        self._email_lookback = max(window, 8 * delay_max)

    def acquire(
        self,
        *,
        address: str,
        email: str,
        now: float | None = None,
        known_device: bool = False,
        bucket_prefix: str = "",
    ) -> LoginTicket:
        """Count this attempt or raise :class:`RateLimited` with a Retry-After in seconds."""
        digest = hashlib.sha256(email.encode()).hexdigest()[:32]
        addr_bucket = f"{bucket_prefix}addr:{address[:80]}" if self._per_address > 0 else None
        email_bucket = (
            f"email:{digest}" if self._per_email > 0 and email and not known_device else None
        )
        ticket = LoginTicket()
        buckets = [b for b in (addr_bucket, email_bucket) if b is not None]
        if not buckets:
            return ticket
        now = time.time() if now is None else now
        with self._db.session() as session:
            horizon = now - max(self._window, self._email_lookback)
            session.execute(delete(LoginAttempt).where(col(LoginAttempt.at) < horizon))
            rows = [LoginAttempt(bucket=bucket, at=now) for bucket in buckets]
            session.add_all(rows)
            session.commit()
            ticket.ids = [int(row.id) for row in rows if row.id is not None]
            retry_after = 0.0
            if addr_bucket is not None:
                retry_after = self._address_wait(session, addr_bucket, now)
            if email_bucket is not None:
                mine = ticket.ids[-1] if ticket.ids else -1
                retry_after = max(retry_after, self._email_wait(session, email_bucket, now, mine))
            if retry_after > 0:
                self._release(session, ticket)
                session.commit()
                raise RateLimited(
                    "too many attempts; try again later",
                    retry_after=max(1, math.ceil(retry_after)),
                )
        return ticket

    def _address_wait(self, session: object, bucket: str, now: float) -> float:
        count, oldest = session.execute(  # type: ignore[attr-defined]
            select(func.count(), func.min(LoginAttempt.at)).where(
                LoginAttempt.bucket == bucket, col(LoginAttempt.at) >= now - self._window
            )
        ).one()
        if count > self._per_address:
            return float(oldest + self._window - now)
        return 0.0

    def _email_wait(self, session: object, bucket: str, now: float, mine: int) -> float:
        count, latest = session.execute(  # type: ignore[attr-defined]
            select(func.count(), func.max(LoginAttempt.at)).where(
                LoginAttempt.bucket == bucket,
                col(LoginAttempt.at) >= now - self._email_lookback,
                col(LoginAttempt.id) != mine,
            )
        ).one()
        extra = count - self._per_email
        if extra < 0 or latest is None:
            return 0.0
        delay = min(self._delay_base * 2 ** min(extra, 30), self._delay_max)
        return float(latest + delay - now)

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
