"""Refresh tokens: one family per login, rotated on every use, reuse revokes the family.

A refresh token is ``<selector>.<verifier>``; the row is found by the selector and the
verifier's SHA-256 is compared in constant time. Spending is a conditional UPDATE
(``used_at IS NULL``), so two replicas racing on one token cannot both succeed: the loser
is treated as a replay and the family is revoked.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col, select

from services.auth.models import RefreshToken, aware, utcnow
from services.auth.opaque import new_selector, new_verifier, sha256_hex, verifier_matches
from shared.errors import Unauthenticated

__all__ = [
    "RefreshReused",
    "family_of",
    "family_start",
    "issue_refresh_token",
    "revoke_family",
    "revoke_user_families",
    "spend_refresh_token",
]

_INVALID = "invalid refresh token"


class RefreshReused(Unauthenticated):
    """A spent refresh token came back: its family is revoked; the caller revokes the
    user's access tokens (and says so on the bus)."""

    def __init__(self, user_id: str) -> None:
        super().__init__("refresh token reused; the session has been revoked")
        self.user_id = user_id


def issue_refresh_token(
    session: Session,
    *,
    user_id: str,
    ttl_days: int,
    family_id: str | None = None,
    family_started_at: datetime | None = None,
    session_max_days: int | None = None,
) -> str:
    """Add a new refresh token (a new family unless ``family_id``); returns its value.
    It expires after ``ttl_days``, but never past the family's absolute lifetime."""
    selector, verifier = new_selector(), new_verifier()
    now = utcnow()
    started = family_started_at or now
    expires = now + timedelta(days=ttl_days)
    if session_max_days is not None:
        expires = min(expires, started + timedelta(days=session_max_days))
    session.add(
        RefreshToken(
            id=selector,
            family_id=family_id or str(uuid.uuid4()),
            user_id=user_id,
            token_hash=sha256_hex(verifier),
            created_at=now,
            expires_at=expires,
            family_started_at=started,
        )
    )
    return f"{selector}.{verifier}"


def _find(session: Session, token: str) -> RefreshToken | None:
    selector, _, verifier = token.partition(".")
    if not selector or not verifier:
        return None
    row = session.get(RefreshToken, selector)
    if row is None or not verifier_matches(row.token_hash, verifier):
        return None
    return row


def revoke_family(session: Session, *, family_id: str) -> int:
    """Revoke every live token of a family; returns how many."""
    now = utcnow()
    result = session.execute(
        update(RefreshToken)
        .where(col(RefreshToken.family_id) == family_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def revoke_user_families(session: Session, *, user_id: str) -> int:
    """Revoke every refresh token of a user; returns the number of families touched."""
    families = session.exec(
        select(RefreshToken.family_id)
        .where(RefreshToken.user_id == user_id, col(RefreshToken.revoked_at).is_(None))
        .distinct()
    ).all()
    for family in families:
        revoke_family(session, family_id=family)
    return len(families)


def family_start(row: RefreshToken) -> datetime:
    """When the login that began ``row``'s family happened (older rows: their creation)."""
    return aware(row.family_started_at or row.created_at)


def spend_refresh_token(
    session: Session, *, token: str, session_max_days: int | None = None
) -> RefreshToken:
    """Mark ``token`` used and return its row. A replay revokes the family (committed) and
    raises :class:`RefreshReused`.

    Raises :class:`Unauthenticated` for unknown, expired, revoked or spent tokens, and for
    a family older than ``session_max_days`` (the absolute session lifetime).
    """
    row = _find(session, token)
    if row is None:
        raise Unauthenticated(_INVALID)
    now = utcnow()
    if row.revoked_at is not None or aware(row.expires_at) <= now:
        raise Unauthenticated(_INVALID)
    if session_max_days is not None and now - family_start(row) >= timedelta(days=session_max_days):
        revoke_family(session, family_id=row.family_id)
        session.commit()
        raise Unauthenticated("session expired; log in again")
    result = session.execute(
        update(RefreshToken)
        .where(col(RefreshToken.id) == row.id, col(RefreshToken.used_at).is_(None))
        .values(used_at=now)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        revoke_family(session, family_id=row.family_id)
        session.commit()
        raise RefreshReused(row.user_id)
    return row


def family_of(session: Session, *, token: str) -> RefreshToken | None:
    """The row of ``token`` if it is genuine (used or not), else None."""
    return _find(session, token)
