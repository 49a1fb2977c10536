"""The Ed25519 signing keyring: private keys in Vault, public keys in the JWKS.

Layout of the Vault platform secret (``AuthSettings.signing_secret_name``)::

    {"active": "<kid>", "keys": "<JSON list of {kid, private_key (b64 raw 32 bytes),
                                              created_at, retired_at}>"}

Rotation adds a new key and marks the old one retired; a retired key stays in the JWKS
(and keeps verifying) until every token it signed has expired, so rotation logs nobody
out. A new key is published at once but signs only after ``activation_delay`` (the
replicas' reload interval), so by the time a token carries its kid every replica's JWKS
lists it. Creation and rotation run under a row lock in the auth database so replicas do
not overwrite each other; replicas re-read the keyring periodically and whenever a token
names a kid they do not know (throttled).
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from sqlmodel import select

from services.auth.models import AuthLock, utcnow
from shared.db import Database
from shared.errors import NotFound, TransientError
from shared.secrets import SecretStore

__all__ = ["SigningKey", "SigningKeyring"]

log = logging.getLogger(__name__)

_MISS_RELOAD_SECONDS = 2.0  # at most one Vault read per this interval for unknown kids


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True, repr=False)
class SigningKey:
    """One keyring entry. ``repr`` never shows the private key."""

    kid: str
    private_key: Ed25519PrivateKey
    created_at: datetime
    retired_at: datetime | None = None

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def jwk(self) -> dict[str, str]:
        x = self.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": _b64url(x),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        }

    def to_record(self) -> dict[str, str | None]:
        raw = self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return {
            "kid": self.kid,
            "private_key": base64.b64encode(raw).decode(),
            "created_at": self.created_at.isoformat(),
            "retired_at": self.retired_at.isoformat() if self.retired_at else None,
        }

    @classmethod
    def from_record(cls, record: dict[str, str | None]) -> SigningKey:
        raw = base64.b64decode(str(record["private_key"]))
        retired = record.get("retired_at")
        return cls(
            kid=str(record["kid"]),
            private_key=Ed25519PrivateKey.from_private_bytes(raw),
            created_at=datetime.fromisoformat(str(record["created_at"])),
            retired_at=datetime.fromisoformat(retired) if retired else None,
        )

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r}, retired_at={self.retired_at!r})"

    @classmethod
    def generate(cls) -> SigningKey:
        kid = utcnow().strftime("%Y%m%d%H%M%S") + "-" + secrets.token_hex(4)
        return cls(kid=kid, private_key=Ed25519PrivateKey.generate(), created_at=utcnow())


class SigningKeyring:
    """Thread-safe cache of the keyring held in Vault."""

    def __init__(
        self,
        *,
        store: SecretStore,
        db: Database,
        secret_name: str,
        token_ttl_seconds: int,
        reload_seconds: int = 30,
    ) -> None:
        self._store = store
        self._db = db
        self._name = secret_name
        self._activation_delay = timedelta(seconds=reload_seconds + 1)
        self._grace = timedelta(seconds=token_ttl_seconds + 60) + self._activation_delay
        self._reload_seconds = reload_seconds
        self._lock = threading.Lock()
        self._keys: dict[str, SigningKey] = {}
        self._active: str | None = None
        self._revoked: set[str] = set()  # never installed again, whatever a read returns
        self._loaded_at = 0.0
        self._last_miss_reload = 0.0

    # -- Vault I/O -----------------------------------------------------------------------

    def _read(self) -> tuple[str | None, dict[str, SigningKey]]:
        data = self._store.get_platform_secret(self._name)
        if not data or "keys" not in data:
            return None, {}
        keys = {k.kid: k for k in map(SigningKey.from_record, json.loads(data["keys"]))}
        active = data.get("active")
        return (active if active in keys else None), keys

    def _write(self, active: str, keys: dict[str, SigningKey]) -> None:
        records = [k.to_record() for k in keys.values()]
        self._store.put_platform_secret(self._name, {"active": active, "keys": json.dumps(records)})

    def _install(self, active: str | None, keys: dict[str, SigningKey]) -> None:
        with self._lock:
            if self._revoked & keys.keys():  # a read from before a revocation
                keys = {kid: key for kid, key in keys.items() if kid not in self._revoked}
                active = active if active in keys else None
            self._active, self._keys = active, keys
            self._loaded_at = time.monotonic()

    def _locked_change(self, *, rotate: bool) -> str:
        """Create (or rotate) the keyring while holding the DB lock row; returns the kid."""
        with self._db.session() as session:
            lock = select(AuthLock).where(AuthLock.name == "signing-keys").with_for_update()
            session.exec(lock).first()
            active, keys = self._read()
            if active is not None and not rotate:
                self._install(active, keys)
                session.commit()
                return active
            now = utcnow()
            new = SigningKey.generate()
            kept: dict[str, SigningKey] = {}
            for kid, key in keys.items():
                if kid == active and key.retired_at is None:
                    key = SigningKey(key.kid, key.private_key, key.created_at, retired_at=now)
                if key.retired_at is None or now - key.retired_at < self._grace:
                    kept[kid] = key
            kept[new.kid] = new
            self._write(new.kid, kept)
            self._install(new.kid, kept)
            session.commit()
        log.info(
            "signing key %s added (signs in %ss; %d keys in the keyring)",
            new.kid,
            int(self._activation_delay.total_seconds()),
            len(kept),
        )
        return new.kid

    # -- public API ----------------------------------------------------------------------

    def ensure(self) -> str:
        """Load the keyring, creating a first key if Vault has none. Returns the active kid."""
        active, keys = self._read()
        if active is not None:
            self._install(active, keys)
            return active
        return self._locked_change(rotate=False)

    def rotate(self) -> str:
        """Add a new key (signing after the activation delay); old keys keep verifying until
        their tokens expire. Returns the new kid."""
        return self._locked_change(rotate=True)

    def revoke(self, kid: str) -> str:
        """Drop ``kid`` now: it leaves the JWKS and verifies nothing more (other replicas
        within ``reload_seconds``). When it was the signing key, a new key signs at once.
        Returns the kid that signs now; :class:`NotFound` for an unknown kid."""
        with self._db.session() as session:
            lock = select(AuthLock).where(AuthLock.name == "signing-keys").with_for_update()
            session.exec(lock).first()
            active, keys = self._read()
            if kid not in keys:
                raise NotFound("no such signing key")
            del keys[kid]
            with self._lock:
                self._revoked.add(kid)
            live = [k for k in keys.values() if k.retired_at is None]
            signing = active if active is not None and active in keys and live else None
            if signing is None:
                # Backdated past the activation delay so it signs at once: there is no
                # trustworthy key left to bridge the delay with.
                fresh = SigningKey.generate()
                new = SigningKey(
                    fresh.kid, fresh.private_key, fresh.created_at - self._activation_delay
                )
                keys[new.kid] = new
                signing = new.kid
            self._write(signing, keys)
            self._install(signing, keys)
            session.commit()
        log.warning("signing key %s revoked; %s signs now", kid, self.active().kid)
        return self.active().kid

    def forget(self, kid: str) -> None:
        """Another replica revoked ``kid`` (``SigningKeyRevoked``): it verifies and signs
        nothing more here, at once, and the keyring is re-read from Vault (which no longer
        holds it). When Vault cannot be read, the rest of the cached keyring stays; if
        ``kid`` was the signing key, nothing signs until a read succeeds."""
        with self._lock:
            self._revoked.add(kid)
            self._keys = {k: key for k, key in self._keys.items() if k != kid}
            if self._active == kid:
                self._active = None
        try:
            self.reload()
        except Exception as exc:
            log.warning("could not re-read the signing keyring after a revocation: %r", exc)
        log.warning("signing key %s revoked by another replica", kid)

    def reload(self) -> None:
        active, keys = self._read()
        if active is None:
            raise TransientError("the signing keyring vanished from Vault")
        self._install(active, keys)

    def _maybe_reload(self) -> None:
        if time.monotonic() - self._loaded_at > self._reload_seconds:
            try:
                self.reload()
            except Exception:  # keep serving from cache while Vault is unreachable
                log.warning("could not re-read the signing keyring; using the cached one")
                self._loaded_at = time.monotonic()

    def active(self) -> SigningKey:
        """The key to sign with: the newest one past its activation delay (or the only one)."""
        self._maybe_reload()
        now = utcnow()
        with self._lock:
            if self._active is None:
                raise TransientError("no signing key loaded")
            usable = [k for k in self._keys.values() if self._usable(k)]
            usable.sort(key=lambda k: k.created_at, reverse=True)
            for key in usable:
                if now - key.created_at >= self._activation_delay:
                    return key
            # Every key is young (a fresh keyring): the oldest was the first published.
            return usable[-1] if usable else self._keys[self._active]

    def _usable(self, key: SigningKey) -> bool:
        return key.retired_at is None or utcnow() - key.retired_at < self._grace

    def public_key(self, kid: str) -> Ed25519PublicKey | None:
        """The verifying key for ``kid``, or None when unknown or retired past its grace."""
        self._maybe_reload()
        key = self._keys.get(kid)
        if key is None and time.monotonic() - self._last_miss_reload > _MISS_RELOAD_SECONDS:
            self._last_miss_reload = time.monotonic()
            try:
                self.reload()
            except Exception:
                log.warning("could not re-read the signing keyring for an unknown kid")
            key = self._keys.get(kid)
        return key.public_key if key is not None and self._usable(key) else None

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JSON Web Key Set: the active key and retired ones still within their grace."""
        self._maybe_reload()
        with self._lock:
            keys = [k for k in self._keys.values() if self._usable(k)]
        return {"keys": [k.jwk() for k in sorted(keys, key=lambda k: k.created_at, reverse=True)]}
