"""API tokens for the CLI and CI: ``aidp_<selector>_<secret>``, stored hashed.

The value is shown once, at creation. Each token holds the scopes chosen at creation
(``shared.scopes``; ``read`` when none are named, ``admin`` only for admins), returned by
listing and introspection. Listing shows the name, the non-secret selector hint, the
scopes and the dates; revoking marks the row (kept for audit) and it stops authenticating at once.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from sqlmodel import Session, col, select

from services.auth.models import ApiToken, aware, utcnow
from services.auth.opaque import (
    API_TOKEN_PREFIX,
    new_selector,
    new_verifier,
    sha256_hex,
    verifier_matches,
)
from shared.errors import NotFound

__all__ = [
    "API_TOKEN_SHAPE",
    "create_api_token",
    "find_api_token",
    "list_api_tokens",
    "revoke_api_token",
    "revoke_user_api_tokens",
]

_LAST_USED_RESOLUTION = timedelta(seconds=60)  # avoid a write on every request
#: ``aidp_`` + 24 hex selector + ``_`` + 43 URL-safe base64 characters (256-bit secret).
API_TOKEN_SHAPE = re.compile(r"^aidp_[0-9a-f]{24}_[A-Za-z0-9_-]{43}$")


def create_api_token(
    session: Session,
    *,
    user_id: str,
    name: str,
    expires_in_days: int | None,
    scopes: list[str],
) -> tuple[ApiToken, str]:
    """Add a token with ``scopes`` (already checked against the user's); returns (row,
    value). The value is not recoverable afterwards."""
    selector, verifier = new_selector(), new_verifier()
    now = utcnow()
    row = ApiToken(
        id=str(uuid.uuid4()),
        user_id=user_id,
        name=name,
        selector=selector,
        token_hash=sha256_hex(verifier),
        scopes=" ".join(scopes),
        created_at=now,
        expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    session.add(row)
    return row, f"{API_TOKEN_PREFIX}{selector}_{verifier}"


def find_api_token(session: Session, *, token: str) -> ApiToken | None:
    """The live row for ``token`` (updating ``last_used_at``), or None (also for any
    malformed value)."""
    if not API_TOKEN_SHAPE.fullmatch(token):
        return None
    selector, _, verifier = token.removeprefix(API_TOKEN_PREFIX).partition("_")
    if not selector or not verifier:
        return None
    row = session.exec(select(ApiToken).where(ApiToken.selector == selector)).first()
    if row is None or not verifier_matches(row.token_hash, verifier):
        return None
    now = utcnow()
    if row.revoked_at is not None or (row.expires_at is not None and aware(row.expires_at) <= now):
        return None
    if row.last_used_at is None or now - aware(row.last_used_at) > _LAST_USED_RESOLUTION:
        row.last_used_at = now
        session.add(row)
        session.commit()
    return row


def list_api_tokens(session: Session, *, user_id: str) -> list[ApiToken]:
    """The user's tokens that are not revoked, newest first."""
    query = (
        select(ApiToken)
        .where(ApiToken.user_id == user_id, col(ApiToken.revoked_at).is_(None))
        .order_by(col(ApiToken.created_at).desc())
    )
    return list(session.exec(query).all())


def revoke_api_token(session: Session, *, user_id: str, token_id: str) -> None:
    """Revoke one of the user's tokens; another user's (or a revoked) token is NotFound."""
    row = session.get(ApiToken, token_id)
    if row is None or row.user_id != user_id or row.revoked_at is not None:
        raise NotFound("no such API token")
    row.revoked_at = utcnow()
    session.add(row)


def revoke_user_api_tokens(session: Session, *, user_id: str) -> int:
    """Revoke all of the user's live tokens; returns how many."""
    rows = list_api_tokens(session, user_id=user_id)
    now = utcnow()
    for row in rows:
        row.revoked_at = now
        session.add(row)
    return len(rows)
