"""Settings of the auth service (prefix ``AIDP_``)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from shared.settings import BaseServiceSettings

__all__ = ["ARGON2_FLOOR", "AuthSettings"]

#: OWASP minimum for argon2id: (memory KiB, iterations, parallelism). Weaker is refused.
ARGON2_FLOOR = (19456, 2, 1)


class AuthSettings(BaseServiceSettings):
    """Everything the auth service reads from its environment."""

    service_name: str = Field("auth", description="Queue, log and table-prefix name.")
    host: str = Field("127.0.0.1", description="Address of this service's HTTP API.")
    port: int = Field(8101, description="Port of this service's HTTP API.")

    admin_emails: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated emails that become platform admins on registration. "
        "Empty: the first user to register becomes the admin, but only while the platform "
        "is bound to loopback (see public_bind_host).",
    )
    registration: Literal["open", "invite", "closed"] | None = Field(
        None,
        description="Who may register: open (anyone), invite (a single-use code from an "
        "admin), closed (nobody). Unset: open when the platform is bound to loopback, "
        "invite otherwise.",
    )
    public_bind_host: str | None = Field(
        None,
        description="Address the platform's public API listens on (`aidp up --host` sets it "
        "in embedded mode). Unset: this service's own host. Decides the loopback defaults.",
    )
    invitation_ttl_hours: int = Field(
        168, ge=1, le=24 * 90, description="How long an invitation code stays usable."
    )
    password_min_score: int = Field(
        3, ge=0, le=4, description="Lowest zxcvbn strength score (0-4) a new password needs."
    )
    jwt_issuer: str = Field("aidp", description="`iss` of access tokens.")
    jwt_audience: str = Field("aidp-api", description="`aud` of access tokens.")
    access_token_ttl_seconds: int = Field(900, ge=60, le=3600, description="Access JWT lifetime.")
    refresh_token_ttl_days: int = Field(
        30, ge=1, le=365, description="Lifetime of one refresh token (each rotation renews it)."
    )
    session_max_days: int = Field(
        30,
        ge=1,
        le=365,
        description="Absolute lifetime of a login session (refresh family): past it, refresh "
        "fails and the user logs in again, however often the session was refreshed.",
    )
    refresh_cookie_secure: bool | None = Field(
        None,
        description="Secure flag of the refresh/device cookies. Unset: set when the request "
        "came over HTTPS (directly or per the gateway's X-Forwarded-Proto).",
    )
    device_cookie_days: int = Field(
        365, ge=1, le=3650, description="Lifetime of the known-device cookie."
    )
    api_token_max_days: int = Field(3650, ge=1, description="Longest API token lifetime allowed.")
    clock_skew_seconds: int = Field(5, ge=0, le=120, description="Leeway on `exp`/`iat` checks.")
    signing_secret_name: str = Field(
        "auth-signing-keys", description="Vault platform secret holding the Ed25519 keyring."
    )
    keyring_reload_seconds: int = Field(
        30, ge=1, description="How often a replica re-reads the keyring from Vault."
    )

    argon2_memory_kib: int = Field(19456, description="argon2id memory cost (KiB).")
    argon2_time_cost: int = Field(2, description="argon2id iterations.")
    argon2_parallelism: int = Field(1, description="argon2id lanes.")

    login_limit_per_address: int = Field(
        10, ge=0, description="Failed/in-flight logins per client address per window (0 = off)."
    )
    login_limit_per_email: int = Field(
        5, ge=0, description="Failed/in-flight logins per email per window (0 = off)."
    )
    login_window_seconds: int = Field(60, ge=1, description="Login rate-limit window.")
    login_delay_base_seconds: int = Field(
        2,
        ge=1,
        description="Past LOGIN_LIMIT_PER_EMAIL failures, each further failure for the email "
        "doubles the wait before the next attempt from an unknown device, starting here.",
    )
    login_delay_max_seconds: int = Field(
        900, ge=1, description="Cap on the per-email delay (progressive, never a lockout)."
    )
    register_limit_per_address: int = Field(
        20, ge=0, description="Registrations per client address per window (0 = off)."
    )
    register_window_seconds: int = Field(300, ge=1, description="Registration rate window.")
    trust_forwarded_for: bool = Field(
        True,
        description="Take the client address from the last X-Forwarded-For entry (the one the "
        "gateway appends). Only the gateway may reach this service.",
    )
    password_change_revokes_api_tokens: bool = Field(
        True, description="A password change also revokes the user's API tokens."
    )

    @field_validator("admin_emails", mode="before")
    @classmethod
    def _split_emails(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            return [str(v).strip().lower() for v in value if str(v).strip()]
        return value

    @field_validator("argon2_memory_kib", "argon2_time_cost", "argon2_parallelism")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be positive")
        return value

    def bound_to_loopback(self) -> bool:
        """True when the public API listens on a loopback address only."""
        host = (self.public_bind_host or self.host).strip().strip("[]")
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def registration_mode(self) -> Literal["open", "invite", "closed"]:
        """The configured mode, or the default: open on loopback, invite otherwise."""
        if self.registration is not None:
            return self.registration
        return "open" if self.bound_to_loopback() else "invite"

    @model_validator(mode="after")
    def _argon2_floor(self) -> AuthSettings:
        m, t, p = ARGON2_FLOOR
        if self.argon2_memory_kib < m or self.argon2_time_cost < t or self.argon2_parallelism < p:
            raise ValueError(f"argon2 parameters below the OWASP floor (m={m} KiB, t={t}, p={p})")
        return self
