"""Session revocation: the user's ``sessions_not_before`` moves to now and a
``SessionsRevoked`` event is staged in the same transaction (outbox), so every gateway
replica refuses the user's older access tokens within moments of the commit.

Reasons (the event's ``reason``): ``logout``, ``logout_all``, ``password_changed``,
``refresh_reuse``, ``account_disabled``, ``admin``, ``admin_revoked`` (an SSO sign-in took
the admin flag away: tokens that still say admin must die).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Session

from services.auth.context import AuthContext
from services.auth.models import User, aware, utcnow
from shared.events import SessionsRevoked, new_event

__all__ = ["revoke_sessions", "sessions_not_before"]


def revoke_sessions(ctx: AuthContext, session: Session, user: User, *, reason: str) -> datetime:
    """Refuse every access token of ``user`` issued until now (the caller commits, then
    calls ``ctx.published()``). Returns the new ``not_before``."""
    now = utcnow()
    user.token_version += 1
    user.sessions_not_before = now
    session.add(user)
    event = SessionsRevoked(user_id=uuid.UUID(user.id), not_before=now, reason=reason)
    ctx.stage(session, new_event(event))
    return now


def sessions_not_before(user: User) -> datetime | None:
    """The oldest ``iat`` an access token of ``user`` may carry (None: nothing revoked)."""
    return aware(user.sessions_not_before) if user.sessions_not_before is not None else None
