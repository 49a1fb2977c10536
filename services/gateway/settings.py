"""Settings of the gateway service (prefix ``AIDP_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, model_validator

from shared.settings import BaseServiceSettings

__all__ = ["GatewaySettings"]

_REPO = Path(__file__).resolve().parents[2]


class GatewaySettings(BaseServiceSettings):
    """Everything the gateway service reads from its environment."""

    service_name: str = Field("gateway", description="Queue, log and table-prefix name.")
    host: str = Field("127.0.0.1", description="Address the public API listens on.")
    port: int = Field(8000, description="Port the public API listens on.")

    auth_url: str = Field("inproc://auth", description="Auth service internal API.")
    fetcher_url: str = Field("inproc://fetcher", description="Fetcher service internal API.")
    trainer_url: str = Field("inproc://trainer", description="Trainer service internal API.")
    provisioner_url: str = Field(
        "inproc://provisioner", description="Provisioner service internal API."
    )
    downstream_timeout: float = Field(
        30.0, gt=0, description="Seconds before a call to another service gives up (503)."
    )

    cors_allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed by CORS (JSON list); empty = same-origin only.",
    )
    ws_allowed_origins: list[str] = Field(
        default_factory=list,
        description="Extra WebSocket origins (JSON list); same-origin is always allowed, "
        "clients sending no Origin (CLI) too.",
    )
    forwarded_allow_ips: str | None = Field(
        None,
        # AIDP_TRUSTED_PROXIES is the documented name; the field's own name keeps working.
        validation_alias=AliasChoices(
            "forwarded_allow_ips", "AIDP_TRUSTED_PROXIES", "AIDP_FORWARDED_ALLOW_IPS"
        ),
        description="Proxies trusted for X-Forwarded-For/-Proto (AIDP_TRUSTED_PROXIES, uvicorn's "
        "forwarded_allow_ips), in distributed and embedded mode; None = trust no one, the "
        "peer address is the client.",
    )

    web_dist: Path = Field(
        _REPO / "web" / "dist",
        description="Built web UI, served at / with SPA fallback when the folder exists.",
    )
    tls_cert: Path | None = Field(None, description="PEM certificate: serve HTTPS when set.")
    tls_key: Path | None = Field(None, description="PEM private key for tls_cert.")

    jwt_issuer: str = Field("aidp", description="Required `iss` of access tokens.")
    jwt_audience: str = Field("aidp-api", description="Required `aud` of access tokens.")
    jwks_refresh_seconds: float = Field(
        5.0, ge=0, description="Least time between two JWKS fetches on an unknown kid."
    )
    api_token_cache_seconds: float = Field(
        5.0, ge=0, description="How long an introspected API token is trusted (revocation lag)."
    )
    jwks_refresh_interval: float = Field(
        60.0,
        gt=0,
        description="Seconds between periodic JWKS fetches: a key auth no longer publishes "
        "stops verifying within this time.",
    )
    access_token_ttl_seconds: int = Field(
        900,
        ge=60,
        le=3600,
        description="Access JWT lifetime, as auth issues them (same variable as auth's): a "
        "token whose exp - iat exceeds it plus jwt_leeway_seconds is refused.",
    )
    jwt_leeway_seconds: float = Field(
        30.0, ge=0, le=300, description="Slack on the lifetime bound (exp - iat) of access tokens."
    )
    revocation_cache_seconds: float = Field(
        60.0,
        gt=0,
        description="How long a user's revocation time (not_before) fetched from auth is "
        "kept before it is asked again; pushes (SessionsRevoked) apply at once regardless.",
    )
    user_max_active_runs: int = Field(
        4,
        ge=0,
        description="Runs one user may have active (not deployed, succeeded, failed or "
        "cancelled) across all projects; a start or project creation beyond answers 429. "
        "0 = unlimited.",
    )
    member_invites_per_hour: int = Field(
        30, ge=1, description="Member invitations one user may send per hour (429 beyond)."
    )

    event_prefetch: int = Field(
        256,
        ge=1,
        description="Status events taken from the bus at once; they are stored in delivery "
        "order, many per transaction (group commit). 1 = one event per commit.",
    )

    ws_ping_interval: float = Field(20.0, gt=0, description="Seconds between server pings.")
    ws_auth_timeout: float = Field(5.0, gt=0, description="Seconds to send the auth message.")
    ws_send_queue: int = Field(
        10_000, ge=1, description="Frames queued per client (memory cap) before it is dropped."
    )
    ws_send_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a send may wait for a client's socket (back-pressure) before the "
        "client is dropped as slow (close 1013; checked every ws_poll_interval).",
    )
    ws_per_message_deflate: bool = Field(
        False,
        description="Offer permessage-deflate on /api/ws. Off by default: status frames are "
        "small JSON, and compressing each one per client costs fan-out CPU.",
    )
    ws_poll_interval: float = Field(
        0.2,
        gt=0,
        description="Seconds between checks for events stored by other gateway processes.",
    )

    webhook_allow_private: bool = Field(
        False,
        description="Dev/test only: let webhooks reach loopback and private addresses (by "
        "default a webhook URL must resolve to public addresses only, like https:// sources).",
    )
    webhook_allow_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts or IP networks (JSON list) webhooks may reach although internal.",
    )
    webhook_max_attempts: int = Field(
        8, ge=1, le=50, description="Tries of one webhook delivery before it is marked failed."
    )
    webhook_backoff: float = Field(
        5.0,
        gt=0,
        description="Seconds before the first retry of a failed delivery; doubles each try "
        "(capped at an hour).",
    )
    webhook_timeout: float = Field(
        10.0, gt=0, description="Seconds a webhook receiver has to answer one delivery."
    )
    webhook_poll_interval: float = Field(
        1.0, gt=0, description="Seconds between looks for due webhook deliveries."
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> GatewaySettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("set both AIDP_TLS_CERT and AIDP_TLS_KEY, or neither")
        return self
