"""Request and response bodies of the auth API.

Requests are strict (unknown fields are a 422 naming the field); responses carry no
hashes or secrets, except the token values a response exists to hand out once.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.auth.emails import normalise_email
from shared.contracts.identity import UtcDatetime

__all__ = [
    "ApiTokenCreate",
    "ApiTokenCreated",
    "ApiTokenOut",
    "Credentials",
    "Email",
    "InvitationCreate",
    "InvitationOut",
    "Jwk",
    "JwksOut",
    "LoginIn",
    "LogoutIn",
    "PasswordChange",
    "PasswordChanged",
    "RefreshIn",
    "RegisterIn",
    "RevokedKey",
    "RotatedKey",
    "TokenPairOut",
    "UserAdminOut",
    "UserOut",
    "normalise_email",
]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Opaque tokens are URL-safe base64/hex plus the separators "." and "_".
TOKEN_PATTERN = r"^[A-Za-z0-9._~+/=-]+$"


def _no_control(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


Email = Annotated[str, AfterValidator(normalise_email)]
Password = Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(_no_control)]
Token = Annotated[str, Field(min_length=1, max_length=4096, pattern=TOKEN_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Credentials(_Strict):
    email: Email
    password: Password


class RegisterIn(Credentials):
    invitation: Token | None = Field(
        None, description="Invitation code (needed when registration is invite-only)."
    )


class LoginIn(Credentials):
    refresh_token_delivery: Literal["cookie", "body"] = Field(
        "cookie",
        description="cookie (browsers): the refresh token is set as an HttpOnly cookie "
        "scoped to /api/auth and left out of the body; body (CLI, CI): it is in the body.",
    )
    device_token: Token | None = Field(
        None, description="Known-device token of a non-browser client (browsers: cookie)."
    )


class RefreshIn(_Strict):
    refresh_token: Token | None = Field(
        None, description="Left out by browsers: the refresh cookie is used instead."
    )


class LogoutIn(_Strict):
    refresh_token: Token | None = None


class PasswordChange(_Strict):
    current_password: Password
    new_password: Password


class ApiTokenCreate(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_no_control)]
    expires_in_days: int | None = Field(None, ge=1, le=3650)
    scopes: list[Annotated[str, Field(max_length=32)]] | None = Field(
        None,
        max_length=8,
        description="read, run, deploy, predict, admin (admins only). Default: [read].",
    )


class InvitationCreate(_Strict):
    email: Email | None = Field(None, description="Only this address may use the code.")
    expires_in_hours: int | None = Field(None, ge=1, le=24 * 90)


class InvitationOut(BaseModel):
    id: str
    email: str | None
    expires_at: UtcDatetime
    code: str = Field(description="The single-use code. Shown once; hand it to the invitee.")


class RevokedKey(BaseModel):
    revoked: str
    active: str = Field(description="The kid that signs from now on.")
    keys: list[str] = Field(description="kids now in the JWKS, newest first.")


class UserAdminOut(BaseModel):
    id: str
    email: str
    is_admin: bool
    disabled: bool


class UserOut(BaseModel):
    id: str
    email: str
    is_admin: bool
    created_at: UtcDatetime


class TokenPairOut(BaseModel):
    access_token: str
    refresh_token: str | None = Field(
        None, description="Only for refresh_token_delivery=body (else in the HttpOnly cookie)."
    )
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
    scopes: list[str]


class ApiTokenCreated(ApiTokenOut):
    token: str = Field(description="The token value. Shown once; store it now.")


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
