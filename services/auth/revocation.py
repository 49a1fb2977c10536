"""Session revocation: the user's ``sessions_not_before`` moves to now and a
``SessionsRevoked`` event is staged in the same transaction (outbox), so every gateway
replica refuses the user's older access tokens within moments of the commit.

Reasons (the event's ``reason``): ``logout``, ``logout_all``, ``password_changed``,
``refresh_reuse``, ``account_disabled``, ``admin``, ``admin_revoked`` (an SSO sign-in took
the admin flag away: tokens that still say admin must die).

Signing-key revocation: the key leaves Vault's keyring, then ``SigningKeyRevoked`` goes
through the outbox to every auth replica (:meth:`SigningKeyring.forget`: its cached keyring
would verify the key's tokens until its next periodic read) and every gateway replica.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Session

from services.auth.context import AuthContext
from services.auth.models import User, aware, utcnow
from shared.events import SessionsRevoked, SigningKeyRevoked, new_event

__all__ = ["revoke_sessions", "revoke_signing_key", "sessions_not_before"]


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


def revoke_signing_key(ctx: AuthContext, *, kid: str) -> str:
    """Drop ``kid`` from the keyring and the JWKS at once, and tell every replica; returns
    the kid that signs now (:class:`~shared.errors.NotFound` for an unknown kid)."""
    active = ctx.keyring.revoke(kid)
    with ctx.db.session() as session:
        ctx.stage(session, new_event(SigningKeyRevoked(kid=kid)))
        session.commit()
    ctx.published()
    return active
