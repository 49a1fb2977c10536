"""Settings of the auth service (prefix ``AIDP_``)."""

from __future__ import annotations

from typing import Annotated

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
        "Empty: the first user to register becomes the admin.",
    )
    jwt_issuer: str = Field("aidp", description="`iss` of access tokens.")
    jwt_audience: str = Field("aidp-api", description="`aud` of access tokens.")
    access_token_ttl_seconds: int = Field(900, ge=60, le=3600, description="Access JWT lifetime.")
    refresh_token_ttl_days: int = Field(30, ge=1, le=365, description="Refresh token lifetime.")
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

    @model_validator(mode="after")
    def _argon2_floor(self) -> AuthSettings:
        m, t, p = ARGON2_FLOOR
        if self.argon2_memory_kib < m or self.argon2_time_cost < t or self.argon2_parallelism < p:
            raise ValueError(f"argon2 parameters below the OWASP floor (m={m} KiB, t={t}, p={p})")
        return self
