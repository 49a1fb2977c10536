"""Tables owned by the auth service (names prefixed ``auth_``).

Secrets are never stored: passwords as argon2id hashes, refresh and API tokens as the
SHA-256 of their secret half (looked up by a non-secret selector). The JWT signing keys
live in Vault, not here.
"""

# No ``from __future__ import annotations``: SQLModel reads the annotations at class creation.

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shared.service.clock import utcnow

__all__ = [
    "ApiToken",
    "AuthLock",
    "Device",
    "Identity",
    "Invitation",
    "LoginAttempt",
    "OidcFlow",
    "RefreshToken",
    "User",
    "aware",
    "utcnow",
]


def aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored here is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _ts(nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(sa.DateTime(timezone=True), nullable=nullable)


class User(SQLModel, table=True):
    """A person. ``token_version`` bumps on logout/password change to refuse older JWTs;
    ``sessions_not_before`` is the same fact as a time (the minimum ``iat`` an access token
    of this user may carry), the form the gateway checks and ``SessionsRevoked`` carries."""

    __tablename__ = "auth_users"

    id: str = Field(primary_key=True, max_length=36)
    email: str = Field(max_length=254, sa_column_kwargs={"unique": True, "nullable": False})
    password_hash: str = Field(max_length=255)
    is_admin: bool = Field(default=False)
    token_version: int = Field(default=0)
    created_at: datetime = Field(sa_column=_ts())
    password_changed_at: datetime = Field(sa_column=_ts())
    sessions_not_before: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    disabled_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))


class RefreshToken(SQLModel, table=True):
    """One refresh token of a family (a login session); spent once, then replaced."""

    __tablename__ = "auth_refresh_tokens"

    id: str = Field(primary_key=True, max_length=32)  # the selector (not secret)
    family_id: str = Field(index=True, max_length=36)
    user_id: str = Field(index=True, max_length=36, foreign_key="auth_users.id")
    token_hash: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=_ts())
    expires_at: datetime = Field(sa_column=_ts())
    used_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    # When the family's login happened: refresh fails past the absolute session lifetime.
    family_started_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))


class ApiToken(SQLModel, table=True):
    """A long-lived token for the CLI/CI (``aidp_<selector>_<secret>``)."""

    __tablename__ = "auth_api_tokens"

    id: str = Field(primary_key=True, max_length=36)
    user_id: str = Field(index=True, max_length=36, foreign_key="auth_users.id")
    name: str = Field(max_length=100)
    selector: str = Field(max_length=32, sa_column_kwargs={"unique": True, "nullable": False})
    token_hash: str = Field(max_length=64)
    scopes: str = Field(default="read", max_length=100)  # space-separated shared.scopes names
    created_at: datetime = Field(sa_column=_ts())
    expires_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    last_used_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))


class Invitation(SQLModel, table=True):
    """A single-use registration code an admin hands out (registration mode ``invite``)."""

    __tablename__ = "auth_invitations"

    id: str = Field(primary_key=True, max_length=32)  # the selector (not secret)
    code_hash: str = Field(max_length=64)
    email: str | None = Field(default=None, max_length=254)  # only this email may use it
    created_by: str = Field(max_length=36)
    created_at: datetime = Field(sa_column=_ts())
    expires_at: datetime = Field(sa_column=_ts())
    used_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    used_by: str | None = Field(default=None, max_length=36)


class Device(SQLModel, table=True):
    """A browser or client that logged in successfully (device cookie): its logins skip the
    per-email delay, so an attacker guessing the password cannot lock the owner out."""

    __tablename__ = "auth_devices"

    id: str = Field(primary_key=True, max_length=32)  # the selector (not secret)
    user_id: str = Field(index=True, max_length=36, foreign_key="auth_users.id")
    token_hash: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=_ts())
    last_used_at: datetime = Field(sa_column=_ts())


class LoginAttempt(SQLModel, table=True):
    """A login attempt counted by the rate limiter (shared by every replica via the DB)."""

    __tablename__ = "auth_login_attempts"

    id: int | None = Field(default=None, primary_key=True)
    bucket: str = Field(index=True, max_length=100)
    at: float = Field(index=True)  # epoch seconds


class AuthLock(SQLModel, table=True):
    """Named rows locked with SELECT ... FOR UPDATE to serialise rare global changes."""

    __tablename__ = "auth_locks"

    name: str = Field(primary_key=True, max_length=64)


class Identity(SQLModel, table=True):
    """A user's account at the OpenID Connect provider (issuer + subject), linked at the
    first SSO sign-in (by verified email); later sign-ins find the user by it."""

    __tablename__ = "auth_identities"
    __table_args__ = (sa.UniqueConstraint("issuer", "subject", name="uq_auth_identities_iss_sub"),)

    id: str = Field(primary_key=True, max_length=36)
    user_id: str = Field(index=True, max_length=36, foreign_key="auth_users.id")
    issuer: str = Field(max_length=255)
    subject: str = Field(max_length=255)
    email: str = Field(max_length=254)  # as the provider said at the last sign-in
    created_at: datetime = Field(sa_column=_ts())
    last_login_at: datetime = Field(sa_column=_ts())


class OidcFlow(SQLModel, table=True):
    """One started SSO sign-in (short-lived, single use). Found by the SHA-256 of the
    ``state`` sent to the provider; bound to the browser that started it by the SHA-256 of
    its ``aidp_oidc_<id>`` cookie. A CLI sign-in ends with a one-time hand-off code (its SHA-256
    in ``handoff_hash``) that only the holder of the CLI's PKCE verifier can spend."""

    __tablename__ = "auth_oidc_flows"

    id: str = Field(primary_key=True, max_length=64)  # SHA-256 of the state
    binding_hash: str = Field(max_length=64)
    nonce: str = Field(max_length=100)
    code_verifier: str = Field(max_length=128)
    redirect_uri: str = Field(max_length=2000)
    address: str = Field(index=True, max_length=64)
    kind: str = Field(default="browser", max_length=10)  # browser | cli
    invitation: str | None = Field(default=None, max_length=200)
    cli_port: int | None = Field(default=None)
    cli_challenge: str | None = Field(default=None, max_length=64)
    cli_state: str | None = Field(default=None, max_length=128)
    handoff_hash: str | None = Field(default=None, max_length=64, index=True)
    user_id: str | None = Field(default=None, max_length=36)
    created_at: datetime = Field(sa_column=_ts())
    expires_at: datetime = Field(sa_column=_ts())
    used_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    handoff_used_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
