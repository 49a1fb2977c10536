"""Invitations: single-use registration codes made by admins (registration mode
``invite``). A code is ``<selector>.<verifier>``; only the verifier's SHA-256 is stored.
An invitation may name the one email allowed to use it."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlmodel import Session, col

from services.auth.models import Invitation, aware, utcnow
from services.auth.opaque import new_selector, new_verifier, sha256_hex, verifier_matches
from shared.errors import Forbidden

__all__ = ["create_invitation", "redeem_invitation"]

_INVALID = "the invitation code is invalid, expired or already used"


def create_invitation(
    session: Session, *, created_by: str, email: str | None, ttl_hours: int
) -> tuple[Invitation, str]:
    """Add an invitation; returns (row, code). The code is not recoverable afterwards."""
    selector, verifier = new_selector(), new_verifier()
    now = utcnow()
    row = Invitation(
        id=selector,
        code_hash=sha256_hex(verifier),
        email=email,
        created_by=created_by,
        created_at=now,
        expires_at=now + timedelta(hours=ttl_hours),
    )
    session.add(row)
    return row, f"{selector}.{verifier}"


def redeem_invitation(session: Session, *, code: str | None, email: str, user_id: str) -> None:
    """Spend ``code`` for ``email`` in ``session`` (a conditional UPDATE: two registrations
    racing on one code let one through). :class:`Forbidden` when it cannot be used."""
    if not code:
        raise Forbidden("registration needs an invitation code from an administrator")
    selector, _, verifier = code.partition(".")
    row = session.get(Invitation, selector) if selector and verifier else None
    if row is None or not verifier_matches(row.code_hash, verifier):
        raise Forbidden(_INVALID)
    now = utcnow()
    if row.used_at is not None or aware(row.expires_at) <= now:
        raise Forbidden(_INVALID)
    if row.email is not None and row.email != email:
        raise Forbidden("this invitation is for another email address")
    result = session.execute(
        update(Invitation)
        .where(col(Invitation.id) == row.id, col(Invitation.used_at).is_(None))
        .values(used_at=now, used_by=user_id)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Forbidden(_INVALID)
