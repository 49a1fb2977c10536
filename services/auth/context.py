"""The auth service's long-lived collaborators, built once in the lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from services.auth.passwords import Passwords
from services.auth.ratelimit import LoginLimiter
from services.auth.settings import AuthSettings
from services.auth.signing import SigningKeyring
from shared.db import Database
from shared.secrets import SecretStore

__all__ = ["AuthContext", "build_context"]


@dataclass(frozen=True)
class AuthContext:
    settings: AuthSettings
    db: Database
    keyring: SigningKeyring
    passwords: Passwords
    limiter: LoginLimiter


def build_context(*, settings: AuthSettings, db: Database, store: SecretStore) -> AuthContext:
    """Wire the collaborators and make sure a signing key exists (created in Vault if not)."""
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
        ),
    )
