"""Minting (caller side) and verifying (callee side) service tokens."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shared.errors import TransientError, Unauthenticated
from shared.service_auth.keys import SigningKeys
from shared.service_auth.tokens import (
    LIFETIME_SECONDS,
    ServiceClaims,
    assemble,
    check_claims,
    parse,
    signing_input,
)

__all__ = ["ServiceAuth", "ServiceCredentials", "ServiceVerifier"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class ServiceCredentials:
    """This service's tokens, one per callee, reused until ``refresh_before`` seconds
    before they expire (a Vault signature per callee every few minutes, not per call)."""

    def __init__(
        self,
        service: str,
        keys: SigningKeys,
        *,
        lifetime: int = LIFETIME_SECONDS,
        refresh_before: int = 60,
        clock: Clock = time.time,
    ) -> None:
        self.service = service
        self._keys = keys
        self._lifetime = lifetime
        self._refresh_before = refresh_before
        self._clock = clock
        self._cache: dict[str, tuple[str, float]] = {}
        self._version = 1
        self._lock = threading.Lock()

    def cached(self, audience: str) -> str | None:
        """A token for ``audience`` still fresh enough to send, without minting one."""
        entry = self._cache.get(audience)
        if entry is not None and entry[1] - self._refresh_before > self._clock():
            return entry[0]
        return None

    def token_for(self, audience: str) -> str:
        """A token naming this service as caller and ``audience`` as callee (may call Vault)."""
        with self._lock:
            token = self.cached(audience)
            if token is not None:
                return token
            now = int(self._clock())
            for _ in range(2):  # twice only when the key was rotated since the last token
                signed = signing_input(
                    caller=self.service,
                    version=self._version,
                    audience=audience,
                    now=now,
                    lifetime=self._lifetime,
                )
                version, signature = self._keys.sign(self.service, signed)
                if version == self._version:
                    break
                self._version = version  # the header must name the version that signs
            else:
                raise TransientError(f"{self.service}'s signing key changes too fast")
            token = assemble(signed, signature)
            self._cache[audience] = (token, now + self._lifetime)
            return token


class ServiceVerifier:
    """Checks tokens sent to ``service``: signature by the caller's own key, audience,
    validity period. Public keys are cached; an unknown key version is looked up again
    at most every ``refetch_seconds`` per caller (a flood of made-up versions is not a
    flood of Vault calls)."""

    def __init__(
        self,
        service: str,
        keys: SigningKeys,
        *,
        known_callers: frozenset[str],
        refetch_seconds: float = 10.0,
        clock: Clock = time.time,
    ) -> None:
        self.service = service
        self._keys = keys
        self._known = known_callers
        self._refetch = refetch_seconds
        self._clock = clock
        self._public: dict[str, dict[int, Ed25519PublicKey]] = {}
        self._fetched_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def _public_key(self, caller: str, version: int) -> Ed25519PublicKey | None:
        with self._lock:
            key = self._public.get(caller, {}).get(version)
            last = self._fetched_at.get(caller)
            if key is not None or (last is not None and time.monotonic() - last < self._refetch):
                return key
            self._fetched_at[caller] = time.monotonic()
        try:
            fetched = dict(self._keys.public_keys(caller))
        except TransientError:
            raise
        except Exception as exc:
            log.warning("service auth: public keys of %s unavailable: %r", caller, exc)
            raise TransientError("service keys are unavailable") from exc
        with self._lock:
            self._public[caller] = fetched
        return fetched.get(version)

    def verify(self, token: str) -> ServiceClaims:
        """The token's claims; :class:`Unauthenticated` when it is not a valid credential
        of a known service for this one."""
        parsed = parse(token)
        if parsed.signer not in self._known:
            raise Unauthenticated("service credential of an unknown service")
        key = self._public_key(parsed.signer, parsed.key_version)
        if key is None:
            raise Unauthenticated("service credential signed by an unknown key")
        try:
            key.verify(parsed.signature, parsed.signed)
        except InvalidSignature as exc:
            raise Unauthenticated("service credential has an invalid signature") from exc
        return check_claims(parsed, audience=self.service, now=self._clock())


class ServiceAuth:
    """One service's side of service-to-service authentication: its credentials (to call
    others) and its verifier (for calls to its internal routes). Built unbound with the
    runtime; :meth:`bind` gives it its keys when the runtime starts."""

    def __init__(self, service: str, *, known_callers: frozenset[str]) -> None:
        self.service = service
        self.known_callers = known_callers
        self._credentials: ServiceCredentials | None = None
        self._verifier: ServiceVerifier | None = None

    def bind(self, keys: SigningKeys) -> None:
        self._credentials = ServiceCredentials(self.service, keys)
        self._verifier = ServiceVerifier(self.service, keys, known_callers=self.known_callers)

    @property
    def credentials(self) -> ServiceCredentials:
        if self._credentials is None:
            raise TransientError(f"{self.service} has not started")
        return self._credentials

    @property
    def verifier(self) -> ServiceVerifier:
        if self._verifier is None:
            raise TransientError(f"{self.service} has not started")
        return self._verifier
