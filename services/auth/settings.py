"""Settings of the auth service (prefix ``AIDP_``)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from shared.settings import BaseServiceSettings

__all__ = ["ARGON2_FLOOR", "AuthSettings", "check_provider_url", "is_loopback_host"]

#: OWASP minimum for argon2id: (memory KiB, iterations, parallelism). Weaker is refused.
ARGON2_FLOOR = (19456, 2, 1)


def is_loopback_host(host: str) -> bool:
    host = host.strip().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_provider_url(url: str, *, allow_insecure: bool, what: str) -> None:
    """An identity provider URL must be https, or http on loopback when ``allow_insecure``
    (development and tests); never credentials, a query or a fragment. ValueError if not."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError as exc:
        raise ValueError(f"AIDP_{what}: not a URL ({exc})") from None
    if not parts.hostname or parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"AIDP_{what}: must be a plain https URL (no credentials or query)")
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and allow_insecure and is_loopback_host(parts.hostname):
        return
    raise ValueError(
        f"AIDP_{what} must use https (http only for a loopback provider with "
        "AIDP_OIDC_ALLOW_INSECURE_ISSUER, in development)"
    )


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

    # -- single sign-on (OpenID Connect); see services/auth/oidc.py -------------------------
    oidc_issuer: str | None = Field(
        None,
        description="Issuer URL of an OpenID Connect provider; set, users may sign in with it "
        "(discovery at <issuer>/.well-known/openid-configuration). https only, except a "
        "loopback issuer with OIDC_ALLOW_INSECURE_ISSUER (development and tests).",
    )
    oidc_client_id: str | None = Field(None, description="This platform's client id there.")
    oidc_client_secret: SecretStr | None = Field(
        None,
        description="The client secret (embedded mode). Distributed mode reads it from Vault "
        "(platform secret OIDC_SECRET_NAME, field client_secret) and refuses it here. None "
        "anywhere: a public client (PKCE only).",
    )
    oidc_secret_name: str = Field(
        "oidc", description="Vault platform secret holding the client secret (client_secret)."
    )
    oidc_name: str = Field(
        "single sign-on",
        min_length=1,
        max_length=40,
        description='Label of the login button: "Sign in with <name>".',
    )
    oidc_scopes: str = Field(
        "openid email profile", description="Scopes asked for (openid is always included)."
    )
    oidc_redirect_url: str | None = Field(
        None,
        description="The callback as registered at the provider (<public URL>/api/auth/oidc/"
        "callback). Unset: built from the Host and scheme the gateway saw; set it behind a "
        "proxy that rewrites Host.",
    )
    oidc_admin_group: str | None = Field(
        None,
        description="Members of this group (OIDC_GROUPS_CLAIM) are platform admins; checked "
        "at every SSO login (leaving the group removes admin, unless in ADMIN_EMAILS).",
    )
    oidc_groups_claim: str = Field("groups", description="Claim listing the user's groups.")
    oidc_allowed_domains: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated email domains whose SSO users get an account without "
        "an invitation in invite mode.",
    )
    oidc_trust_email: bool = Field(
        False,
        description="Treat every email the provider sends as verified, even without "
        "email_verified (Entra ID work accounts send none). Only for a provider whose users "
        "cannot choose their own email address.",
    )
    oidc_allow_insecure_issuer: bool = Field(
        False,
        description="Development/tests: accept an http:// issuer on a loopback address.",
    )
    oidc_flow_ttl_seconds: int = Field(
        600, ge=60, le=3600, description="How long a started SSO sign-in may take."
    )
    oidc_pending_limit_per_address: int = Field(
        30, ge=0, description="Unfinished SSO sign-ins per client address (0 = off)."
    )
    oidc_http_timeout_seconds: float = Field(
        10.0, gt=0, le=120, description="Timeout of each request to the provider."
    )

    @field_validator("oidc_allowed_domains", mode="before")
    @classmethod
    def _split_domains(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            return [str(v).strip().lower().lstrip("@") for v in value if str(v).strip()]
        return value

    @field_validator("oidc_issuer", "oidc_redirect_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id)

    @model_validator(mode="after")
    def _oidc(self) -> AuthSettings:
        if not self.oidc_issuer:
            return self
        if not self.oidc_client_id:
            raise ValueError("AIDP_OIDC_ISSUER is set but AIDP_OIDC_CLIENT_ID is not")
        check_provider_url(
            self.oidc_issuer, allow_insecure=self.oidc_allow_insecure_issuer, what="OIDC_ISSUER"
        )
        if self.oidc_redirect_url is not None:
            parts = urlsplit(self.oidc_redirect_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("AIDP_OIDC_REDIRECT_URL must be an absolute http(s) URL")
        if self.mode == "distributed" and self.oidc_allow_insecure_issuer:
            raise ValueError("AIDP_OIDC_ALLOW_INSECURE_ISSUER is for development (embedded mode)")
        if self.mode == "distributed" and self.oidc_client_secret is not None:
            raise ValueError(
                "AIDP_OIDC_CLIENT_SECRET is not read in distributed mode: store it in Vault "
                f"(platform secret {self.oidc_secret_name!r}, field client_secret)"
            )
        return self

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
        return is_loopback_host(self.public_bind_host or self.host)

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
