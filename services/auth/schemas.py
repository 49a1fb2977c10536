"""Request and response bodies of the auth API.

Requests are strict (unknown fields are a 422 naming the field); responses carry no
hashes or secrets, except the token values a response exists to hand out once.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = [
    "ApiTokenCreate",
    "ApiTokenCreated",
    "ApiTokenOut",
    "Credentials",
    "Email",
    "IntrospectIn",
    "IntrospectOut",
    "Jwk",
    "JwksOut",
    "LogoutIn",
    "PasswordChange",
    "PasswordChanged",
    "RefreshIn",
    "RotatedKey",
    "TokenPairOut",
    "UserOut",
    "UserRef",
    "normalise_email",
]

_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Opaque tokens are URL-safe base64/hex plus the separators "." and "_".
TOKEN_PATTERN = r"^[A-Za-z0-9._~+/=-]+$"


def normalise_email(value: str) -> str:
    """Trimmed, lowercased; a ValueError unless it looks like an email address."""
    email = value.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise ValueError("not a valid email address")
    return email


def _no_control(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


Email = Annotated[str, AfterValidator(normalise_email)]
#: SQLite hands back naive datetimes; everything stored is UTC, so say so on the wire.
UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
Password = Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(_no_control)]
Token = Annotated[str, Field(min_length=1, max_length=4096, pattern=TOKEN_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Credentials(_Strict):
    email: Email
    password: Password


class RefreshIn(_Strict):
    refresh_token: Token


class LogoutIn(_Strict):
    refresh_token: Token | None = None


class PasswordChange(_Strict):
    current_password: Password
    new_password: Password


class ApiTokenCreate(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_no_control)]
    expires_in_days: int | None = Field(None, ge=1, le=3650)


class IntrospectIn(_Strict):
    token: Token


class UserOut(BaseModel):
    id: str
    email: str
    is_admin: bool
    created_at: UtcDatetime


class UserRef(BaseModel):
    id: str
    email: str


class TokenPairOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class PasswordChanged(BaseModel):
    revoked_sessions: int
    revoked_api_tokens: int


class ApiTokenOut(BaseModel):
    id: str
    name: str
    hint: str = Field(description="Non-secret start of the token, to recognise it.")
    created_at: UtcDatetime
    expires_at: UtcDatetime | None
    last_used_at: UtcDatetime | None


class ApiTokenCreated(ApiTokenOut):
    token: str = Field(description="The token value. Shown once; store it now.")


class IntrospectOut(BaseModel):
    user_id: str
    email: str
    is_admin: bool
    kind: Literal["access", "api"]


class Jwk(BaseModel):
    kty: str
    crv: str
    x: str
    kid: str
    alg: str
    use: str


class JwksOut(BaseModel):
    keys: list[Jwk]


class RotatedKey(BaseModel):
    kid: str
    keys: list[str] = Field(description="kids now in the JWKS, newest first.")
