"""Known devices: a login that succeeds hands the client a device token (a cookie for
browsers); logins presenting a device token of the same account skip the per-email delay.

A device token is ``<selector>.<verifier>`` like a refresh token; only the verifier's
SHA-256 is stored. It proves nothing on its own (the password is still required); it
only tells the rate limiter that this client has logged into this account before.
"""

from __future__ import annotations

from sqlmodel import Session

from services.auth.models import Device, utcnow
from services.auth.opaque import new_selector, new_verifier, sha256_hex, verifier_matches

__all__ = ["DEVICE_COOKIE", "is_known_device", "issue_device_token"]

DEVICE_COOKIE = "aidp_device"


def issue_device_token(session: Session, *, user_id: str) -> str:
    """Remember a new device of ``user_id``; returns the token value for the client."""
    selector, verifier = new_selector(), new_verifier()
    now = utcnow()
    session.add(
        Device(
            id=selector,
            user_id=user_id,
            token_hash=sha256_hex(verifier),
            created_at=now,
            last_used_at=now,
        )
    )
    return f"{selector}.{verifier}"


def is_known_device(session: Session, *, token: str | None, user_id: str) -> bool:
    """True when ``token`` is a genuine device token of ``user_id``."""
    if not token or len(token) > 200:
        return False
    selector, _, verifier = token.partition(".")
    if not selector or not verifier:
        return False
    row = session.get(Device, selector)
    return row is not None and row.user_id == user_id and verifier_matches(row.token_hash, verifier)
