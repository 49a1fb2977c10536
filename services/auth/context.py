"""The auth service's long-lived collaborators, built once in the lifespan."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlmodel import Session

from services.auth.oidc import OidcProvider
from services.auth.passwords import Passwords
from services.auth.ratelimit import LoginLimiter
from services.auth.settings import AuthSettings
from services.auth.signing import SigningKeyring
from shared.db import Database
from shared.events import Envelope
from shared.secrets import SecretStore

__all__ = ["AuthContext", "build_context", "oidc_client_secret"]

log = logging.getLogger("aidp.auth")


@dataclass(frozen=True)
class AuthContext:
    settings: AuthSettings
    db: Database
    keyring: SigningKeyring
    passwords: Passwords
    limiter: LoginLimiter
    #: Registrations per client address (``register:addr:`` buckets).
    register_limiter: LoginLimiter
    #: Stage an event in the outbox within a session (published when it commits).
    stage: Callable[[Session, Envelope], None] = field(default=lambda _s, _e: None)
    #: Wake the outbox relay after a commit that staged events.
    published: Callable[[], None] = field(default=lambda: None)
    #: The single sign-on provider (None: SSO is off).
    oidc: OidcProvider | None = None


def oidc_client_secret(settings: AuthSettings, store: SecretStore) -> str | None:
    """The OIDC client secret: the setting (embedded mode only), else Vault's platform
    secret ``settings.oidc_secret_name`` (field ``client_secret``); None: a public client."""
    if settings.oidc_client_secret is not None:
        return settings.oidc_client_secret.get_secret_value()
    stored = store.get_platform_secret(settings.oidc_secret_name) or {}
    value = stored.get("client_secret")
    if not value:
        log.warning(
            "oidc: no client secret (setting or Vault platform secret %r): signing in as a "
            "public client (PKCE only)",
            settings.oidc_secret_name,
        )
        return None
    return str(value)


def build_context(
    *,
    settings: AuthSettings,
    db: Database,
    store: SecretStore,
    stage: Callable[[Session, Envelope], None] | None = None,
    published: Callable[[], None] | None = None,
) -> AuthContext:
    """Wire the collaborators and make sure a signing key exists (created in Vault if not).
    ``stage``/``published`` come from the service runtime (its outbox); without them (a
    one-off admin command) events are not published."""
    keyring = SigningKeyring(
        store=store,
        db=db,
        secret_name=settings.signing_secret_name,
        token_ttl_seconds=settings.access_token_ttl_seconds + settings.clock_skew_seconds,
        reload_seconds=settings.keyring_reload_seconds,
    )
    keyring.ensure()
    oidc = None
    if settings.oidc_enabled():
        oidc = OidcProvider(settings, client_secret=oidc_client_secret(settings, store))
        log.info(
            "single sign-on on: issuer %s, client %s", settings.oidc_issuer, settings.oidc_client_id
        )
    return AuthContext(
        settings=settings,
        db=db,
        keyring=keyring,
        passwords=Passwords(
            memory_kib=settings.argon2_memory_kib,
            time_cost=settings.argon2_time_cost,
            parallelism=settings.argon2_parallelism,
        ),
        limiter=LoginLimiter(
            db=db,
            per_address=settings.login_limit_per_address,
            per_email=settings.login_limit_per_email,
            window=settings.login_window_seconds,
            delay_base=settings.login_delay_base_seconds,
            delay_max=settings.login_delay_max_seconds,
        ),
        register_limiter=LoginLimiter(
            db=db,
            per_address=settings.register_limit_per_address,
            per_email=0,
            window=settings.register_window_seconds,
        ),
        stage=stage or (lambda _s, _e: None),
        published=published or (lambda: None),
        oidc=oidc,
    )
