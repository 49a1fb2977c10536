"""The auth service's logic: keyword-only functions over an :class:`AuthContext`.

Routes are thin wrappers around these. Every failure is one of ``shared.errors``; the
messages never reveal whether an email is registered (login) or why a token failed beyond
"invalid"/"expired"/"revoked".
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from services.auth import api_tokens, sessions
from services.auth.access import issue_access_token, verify_access_token
from services.auth.context import AuthContext
from services.auth.models import AuthLock, User, utcnow
from services.auth.opaque import API_TOKEN_PREFIX
from services.auth.passwords import check_policy
from shared.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated

__all__ = [
    "Principal",
    "TokenPair",
    "authenticate",
    "change_password",
    "get_user",
    "login",
    "logout",
    "lookup_user",
    "refresh",
    "register",
    "rotate_signing_key",
]

_BAD_LOGIN = "invalid email or password"


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True)
class Principal:
    """Who a token belongs to (values from the database, not from the token)."""

    user_id: str
    email: str
    is_admin: bool
    kind: Literal["access", "api"]


def _issue_pair(
    ctx: AuthContext, session: Session, user: User, *, family_id: str | None
) -> TokenPair:
    s = ctx.settings
    refresh_value = sessions.issue_refresh_token(
        session, user_id=user.id, ttl_days=s.refresh_token_ttl_days, family_id=family_id
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
    )
    return TokenPair(access, refresh_value, s.access_token_ttl_seconds)


def _user_by_email(session: Session, email: str) -> User | None:
    return session.exec(select(User).where(User.email == email)).first()


def register(ctx: AuthContext, *, email: str, password: str) -> User:
    """Create a user (``email`` already normalised). The first user, or one listed in
    ``admin_emails``, becomes a platform admin."""
    check_policy(password, email=email)
    password_hash = ctx.passwords.hash(password)  # slow: outside the transaction
    with ctx.db.session() as session:
        if _user_by_email(session, email) is not None:
            raise Conflict("email already registered")
        if ctx.settings.admin_emails:
            is_admin = email in ctx.settings.admin_emails
        else:  # serialise "am I the first?" across replicas
            lock = select(AuthLock).where(AuthLock.name == "first-admin").with_for_update()
            session.exec(lock).first()
            is_admin = session.exec(select(User.id).limit(1)).first() is None
        now = utcnow()
        user = User(
            id=str(uuid.uuid4()),
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


def login(ctx: AuthContext, *, email: str, password: str, address: str) -> TokenPair:
    """Check the credentials (rate limited per address and per email) and open a session."""
    ticket = ctx.limiter.acquire(address=address, email=email)
    with ctx.db.session() as session:
        user = _user_by_email(session, email)
    # Unknown users verify against a dummy hash: same cost as a wrong password.
    if not ctx.passwords.verify(user.password_hash if user else None, password) or user is None:
        raise Unauthenticated(_BAD_LOGIN)
    ctx.limiter.succeeded(ticket)
    with ctx.db.session() as session:
        if ctx.passwords.needs_rehash(user.password_hash):
            user.password_hash = ctx.passwords.hash(password)
            session.add(user)
        pair = _issue_pair(ctx, session, user, family_id=None)
        session.commit()
    return pair


def refresh(ctx: AuthContext, *, refresh_token: str) -> TokenPair:
    """Spend a refresh token and hand out a new pair in the same family."""
    with ctx.db.session() as session:
        row = sessions.spend_refresh_token(session, token=refresh_token)
        user = session.get(User, row.user_id)
        if user is None:
            raise Unauthenticated("invalid refresh token")
        pair = _issue_pair(ctx, session, user, family_id=row.family_id)
        session.commit()
    return pair


def logout(ctx: AuthContext, *, user_id: str, refresh_token: str | None) -> None:
    """Revoke the refresh family of ``refresh_token`` (if the user's) and every access token
    issued to the user so far (token version bump)."""
    with ctx.db.session() as session:
        if refresh_token:
            row = sessions.family_of(session, token=refresh_token)
            if row is not None and row.user_id == user_id:
                sessions.revoke_family(session, family_id=row.family_id)
        user = session.get(User, user_id)
        if user is not None:
            user.token_version += 1
            session.add(user)
        session.commit()


def change_password(
    ctx: AuthContext, *, user_id: str, current_password: str, new_password: str, address: str
) -> dict[str, int]:
    """Replace the password; revokes every session, access token and (by default) API token."""
    user = get_user(ctx, user_id=user_id)
    ticket = ctx.limiter.acquire(address=address, email=user.email)
    if not ctx.passwords.verify(user.password_hash, current_password):
        raise Forbidden("current_password: is incorrect")
    ctx.limiter.succeeded(ticket)
    check_policy(new_password, email=user.email, field="new_password")
    if new_password == current_password:
        raise InvalidInput("new_password: must differ from the current password")
    new_hash = ctx.passwords.hash(new_password)
    with ctx.db.session() as session:
        fresh = session.get(User, user_id)
        if fresh is None:
            raise NotFound("no such user")
        fresh.password_hash = new_hash
        fresh.password_changed_at = utcnow()
        fresh.token_version += 1
        session.add(fresh)
        families = sessions.revoke_user_families(session, user_id=user_id)
        tokens = 0
        if ctx.settings.password_change_revokes_api_tokens:
            tokens = api_tokens.revoke_user_api_tokens(session, user_id=user_id)
        session.commit()
    return {"revoked_sessions": families, "revoked_api_tokens": tokens}


def authenticate(ctx: AuthContext, *, token: str) -> Principal:
    """Introspect an access JWT or an ``aidp_`` API token; :class:`Unauthenticated` if not
    valid, expired or revoked."""
    s = ctx.settings
    with ctx.db.session() as session:
        if token.startswith(API_TOKEN_PREFIX):
            row = api_tokens.find_api_token(session, token=token)
            user = session.get(User, row.user_id) if row is not None else None
            if user is None:
                raise Unauthenticated("invalid API token")
            return Principal(user.id, user.email, user.is_admin, "api")
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
        return Principal(user.id, user.email, user.is_admin, "access")


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
