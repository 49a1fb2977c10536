"""The auth service's logic: keyword-only functions over an :class:`AuthContext`.

Routes are thin wrappers around these. Every failure is one of ``shared.errors``; the
messages never reveal whether an email is registered (login) or why a token failed beyond
"invalid"/"expired"/"revoked".
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from services.auth import api_tokens, devices, invitations, sessions
from services.auth.access import issue_access_token, verify_access_token
from services.auth.context import AuthContext
from services.auth.first_admin import new_account_is_admin
from services.auth.models import User, utcnow
from services.auth.opaque import API_TOKEN_PREFIX
from services.auth.passwords import check_policy
from services.auth.revocation import revoke_sessions, revoke_signing_key, sessions_not_before
from shared.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthenticated,
)
from shared.scopes import Scope, parse_scopes

__all__ = [
    "Principal",
    "TokenPair",
    "authenticate",
    "admin_revoke_sessions",
    "change_password",
    "check_scopes",
    "get_user",
    "issue_session",
    "login",
    "logout",
    "logout_all",
    "set_disabled",
    "user_scopes",
    "lookup_user",
    "refresh",
    "register",
    "revoke_signing_key",
    "rotate_signing_key",
    "session_state",
]

_BAD_LOGIN = "invalid email or password"


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    device_token: str | None = None  # set on login from a device not known yet


@dataclass(frozen=True)
class Principal:
    """Who a token belongs to (values from the database, not from the token)."""

    user_id: str
    email: str
    is_admin: bool
    kind: Literal["access", "api"]
    scopes: tuple[str, ...] = ()
    not_before: datetime | None = None


def user_scopes(is_admin: bool) -> list[str]:
    """Every scope a user may hold (``admin`` only for platform admins), in a stable order."""
    return [s.value for s in Scope if s is not Scope.ADMIN or is_admin]


def _publish(ctx: AuthContext, session: Session) -> None:
    """Commit ``session`` (with its staged events) and wake the outbox relay."""
    session.commit()
    ctx.published()


def _issue_pair(
    ctx: AuthContext,
    session: Session,
    user: User,
    *,
    family_id: str | None,
    family_started_at: datetime | None = None,
) -> TokenPair:
    s = ctx.settings
    refresh_value = sessions.issue_refresh_token(
        session,
        user_id=user.id,
        ttl_days=s.refresh_token_ttl_days,
        family_id=family_id,
        family_started_at=family_started_at,
        session_max_days=s.session_max_days,
    )
    access = issue_access_token(
        keyring=ctx.keyring,
        user_id=user.id,
        email=user.email,
        is_admin=user.is_admin,
        token_version=user.token_version,
        issuer=s.jwt_issuer,
        audience=s.jwt_audience,
        ttl_seconds=s.access_token_ttl_seconds,
        scopes=user_scopes(user.is_admin),
    )
    return TokenPair(access, refresh_value, s.access_token_ttl_seconds)


def issue_session(ctx: AuthContext, session: Session, user: User) -> TokenPair:
    """A new login session (refresh family + access token) for ``user``, staged in
    ``session`` (the caller commits): what a password login or a single sign-on gets."""
    return _issue_pair(ctx, session, user, family_id=None)


def _user_by_email(session: Session, email: str) -> User | None:
    return session.exec(select(User).where(User.email == email)).first()


def register(
    ctx: AuthContext, *, email: str, password: str, invitation: str | None, address: str
) -> User:
    """Create a user (``email`` already normalised) as the registration mode allows (in
    invite mode, emails in ``admin_emails`` need no code). Admins: those in
    ``admin_emails``; with none configured, the first user, but only on loopback."""
    s = ctx.settings
    mode = s.registration_mode()
    if mode == "closed":
        raise Forbidden("registration is closed on this platform; ask an administrator")
    # The admins the operator named bootstrap an invite-only platform without a code.
    needs_code = mode == "invite" and email not in s.admin_emails
    if needs_code and not invitation:
        raise Forbidden("registration needs an invitation code from an administrator")
    ctx.register_limiter.acquire(address=address, email="", bucket_prefix="register:")
    check_policy(password, email=email, min_score=s.password_min_score)
    password_hash = ctx.passwords.hash(password)  # slow: outside the transaction
    with ctx.db.session() as session:
        if _user_by_email(session, email) is not None:
            raise Conflict("email already registered")
        user_id = str(uuid.uuid4())
        if needs_code:
            invitations.redeem_invitation(session, code=invitation, email=email, user_id=user_id)
        is_admin = new_account_is_admin(session, s, email)
        now = utcnow()
        user = User(
            id=user_id,
            email=email,
            password_hash=password_hash,
            is_admin=is_admin,
            created_at=now,
            password_changed_at=now,
        )
        session.add(user)
        try:
            session.commit()
        except IntegrityError as exc:
            raise Conflict("email already registered") from exc
    return user


def login(
    ctx: AuthContext, *, email: str, password: str, address: str, device_token: str | None
) -> TokenPair:
    """Check the credentials and open a session. Rate limited per address; per email a
    progressive delay applies, except from a device that logged into the account before."""
    with ctx.db.session() as session:
        user = _user_by_email(session, email)
        known = user is not None and devices.is_known_device(
            session, token=device_token, user_id=user.id
        )
    ticket = ctx.limiter.acquire(address=address, email=email, known_device=known)
    # Unknown users verify against a dummy hash: same cost as a wrong password.
    if not ctx.passwords.verify(user.password_hash if user else None, password) or user is None:
        raise Unauthenticated(_BAD_LOGIN)
    ctx.limiter.succeeded(ticket)
    if user.disabled_at is not None:
        raise Forbidden("this account is disabled; ask an administrator")
    with ctx.db.session() as session:
        if ctx.passwords.needs_rehash(user.password_hash):
            user.password_hash = ctx.passwords.hash(password)
            session.add(user)
        pair = _issue_pair(ctx, session, user, family_id=None)
        new_device = None if known else devices.issue_device_token(session, user_id=user.id)
        session.commit()
    return TokenPair(pair.access_token, pair.refresh_token, pair.expires_in, new_device)


def refresh(ctx: AuthContext, *, refresh_token: str) -> TokenPair:
    """Spend a refresh token and hand out a new pair in the same family (never past the
    family's absolute lifetime). A replayed token revokes the user's sessions."""
    with ctx.db.session() as session:
        try:
            row = sessions.spend_refresh_token(
                session, token=refresh_token, session_max_days=ctx.settings.session_max_days
            )
        except sessions.RefreshReused as reused:
            user = session.get(User, reused.user_id)
            if user is not None:  # whoever replayed it may hold an access token
                revoke_sessions(ctx, session, user, reason="refresh_reuse")
                _publish(ctx, session)
            raise
        user = session.get(User, row.user_id)
        if user is None or user.disabled_at is not None:
            raise Unauthenticated("invalid refresh token")
        started = sessions.family_start(row)
        pair = _issue_pair(ctx, session, user, family_id=row.family_id, family_started_at=started)
        session.commit()
    return pair


def logout(ctx: AuthContext, *, user_id: str, refresh_token: str | None) -> None:
    """Revoke the refresh family of ``refresh_token`` (if the user's) and every access token
    issued to the user so far (``SessionsRevoked``)."""
    with ctx.db.session() as session:
        if refresh_token:
            row = sessions.family_of(session, token=refresh_token)
            if row is not None and row.user_id == user_id:
                sessions.revoke_family(session, family_id=row.family_id)
        user = session.get(User, user_id)
        if user is not None:
            revoke_sessions(ctx, session, user, reason="logout")
        _publish(ctx, session)


def logout_all(ctx: AuthContext, *, user_id: str) -> int:
    """Revoke every refresh family and access token of the user; returns the families."""
    with ctx.db.session() as session:
        families = sessions.revoke_user_families(session, user_id=user_id)
        user = session.get(User, user_id)
        if user is not None:
            revoke_sessions(ctx, session, user, reason="logout_all")
        _publish(ctx, session)
    return families


def set_disabled(ctx: AuthContext, *, user_id: str, disabled: bool) -> User:
    """Disable (every session, refresh family and API token revoked) or re-enable a user."""
    with ctx.db.session() as session:
        user = session.get(User, user_id)
        if user is None:
            raise NotFound("no such user")
        if disabled:
            user.disabled_at = user.disabled_at or utcnow()
            sessions.revoke_user_families(session, user_id=user_id)
            api_tokens.revoke_user_api_tokens(session, user_id=user_id)
            revoke_sessions(ctx, session, user, reason="account_disabled")
        else:
            user.disabled_at = None
            session.add(user)
        _publish(ctx, session)
        session.refresh(user)
    return user


def admin_revoke_sessions(ctx: AuthContext, *, user_id: str) -> datetime:
    """An admin's action: every session of the user ends now (refresh families too)."""
    with ctx.db.session() as session:
        user = session.get(User, user_id)
        if user is None:
            raise NotFound("no such user")
        sessions.revoke_user_families(session, user_id=user_id)
        not_before = revoke_sessions(ctx, session, user, reason="admin")
        _publish(ctx, session)
    return not_before


def change_password(
    ctx: AuthContext, *, user_id: str, current_password: str, new_password: str, address: str
) -> dict[str, int]:
    """Replace the password; revokes every session, access token and (by default) API token."""
    user = get_user(ctx, user_id=user_id)
    ticket = ctx.limiter.acquire(address=address, email=user.email)
    if not ctx.passwords.verify(user.password_hash, current_password):
        raise Forbidden("current_password: is incorrect")
    ctx.limiter.succeeded(ticket)
    check_policy(
        new_password,
        email=user.email,
        field="new_password",
        min_score=ctx.settings.password_min_score,
    )
    if new_password == current_password:
        raise InvalidInput("new_password: must differ from the current password")
    new_hash = ctx.passwords.hash(new_password)
    with ctx.db.session() as session:
        fresh = session.get(User, user_id)
        if fresh is None:
            raise NotFound("no such user")
        fresh.password_hash = new_hash
        fresh.password_changed_at = utcnow()
        revoke_sessions(ctx, session, fresh, reason="password_changed")
        families = sessions.revoke_user_families(session, user_id=user_id)
        tokens = 0
        if ctx.settings.password_change_revokes_api_tokens:
            tokens = api_tokens.revoke_user_api_tokens(session, user_id=user_id)
        _publish(ctx, session)
    return {"revoked_sessions": families, "revoked_api_tokens": tokens}


def authenticate(ctx: AuthContext, *, token: str) -> Principal:
    """Introspect an access JWT or an ``aidp_`` API token; :class:`Unauthenticated` if not
    valid, expired or revoked."""
    s = ctx.settings
    with ctx.db.session() as session:
        if token.startswith(API_TOKEN_PREFIX):
            row = api_tokens.find_api_token(session, token=token)
            user = session.get(User, row.user_id) if row is not None else None
            if row is None or user is None or user.disabled_at is not None:
                raise Unauthenticated("invalid API token")
            allowed = set(user_scopes(user.is_admin))
            scopes = tuple(n for n in row.scopes.split() if n in allowed)
            return Principal(user.id, user.email, user.is_admin, "api", scopes)
        claims = verify_access_token(
            token,
            keyring=ctx.keyring,
            issuer=s.jwt_issuer,
            audience=s.jwt_audience,
            leeway=s.clock_skew_seconds,
        )
        user = session.get(User, claims.user_id)
        if user is None or user.token_version != claims.token_version:
            raise Unauthenticated("access token revoked")
        not_before = sessions_not_before(user)
        if not_before is not None and claims.issued_at < not_before.timestamp():
            raise Unauthenticated("access token revoked")
        if user.disabled_at is not None:
            raise Unauthenticated("access token revoked")
        return Principal(
            user.id,
            user.email,
            user.is_admin,
            "access",
            tuple(user_scopes(user.is_admin)),
            not_before,
        )


def get_user(ctx: AuthContext, *, user_id: str) -> User:
    with ctx.db.session() as session:
        user = session.get(User, user_id)
    if user is None:
        raise NotFound("no such user")
    return user


def lookup_user(ctx: AuthContext, *, email: str) -> User:
    with ctx.db.session() as session:
        user = _user_by_email(session, email)
    if user is None:
        raise NotFound("no such user")
    return user


def rotate_signing_key(ctx: AuthContext) -> str:
    """Make a new signing key active (old ones verify until their tokens expire)."""
    return ctx.keyring.rotate()


def check_scopes(*, requested: list[str] | None, is_admin: bool) -> list[str]:
    """The scopes of a new API token: ``read`` when none are named; ``InvalidInput`` for
    unknown ones, ``Forbidden`` for ``admin`` asked by a non-admin."""
    try:
        chosen = {Scope.READ} if requested is None else set(parse_scopes(requested))
    except ValueError as exc:
        raise InvalidInput(f"scopes: {exc}") from exc
    if not chosen:
        raise InvalidInput("scopes: name at least one scope")
    if Scope.ADMIN in chosen and not is_admin:
        raise Forbidden("scopes: only platform admins may create admin tokens")
    return [s.value for s in Scope if s in chosen]


def session_state(ctx: AuthContext, *, user_id: str) -> datetime | None:
    """The user's ``sessions_not_before`` (for gateways that missed the event)."""
    user = get_user(ctx, user_id=user_id)
    return sessions_not_before(user)
