"""The auth service's long-lived collaborators, built once in the lifespan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlmodel import Session

from services.auth.passwords import Passwords
from services.auth.ratelimit import LoginLimiter
from services.auth.settings import AuthSettings
from services.auth.signing import SigningKeyring
from shared.db import Database
from shared.events import Envelope
from shared.secrets import SecretStore

__all__ = ["AuthContext", "build_context"]


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
    )
