"""Keyed blob names for the artifact store: no listing of the store confirms a guessed file.

A blob's name is ``HMAC-SHA256(naming key, sha256(plaintext))`` in hex. Without the key the
name says nothing about the content (before, names were the bare sha256, so whoever could
list the store — a backup, a node — could confirm a guess of any file). Hashing the content
once and keying the digest lets the trainer name a file a node hashed (the key never goes
to a node) and makes a legacy name's successor a function of the old name alone.

The key is 32 random bytes kept in the secret store as the platform secret
``store-naming-key`` (``{"key": <base64>}``), created by the first service that needs it
(create-only: a key once written is never replaced, so concurrent first starts agree).
It is never logged, stored in a database or sent in an event; ``repr`` hides it. Changing
it renames every blob: an installation keeps one key for the life of its store.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading

from shared.secrets.base import SecretStore

__all__ = ["DEFAULT_NAMING_SECRET", "NamingKey"]

#: Platform secret holding the naming key (see :class:`shared.secrets.policies.PolicyParams`).
DEFAULT_NAMING_SECRET = "store-naming-key"

_KEY_BYTES = 32


class NamingKey:
    """The installation's blob-naming key, loaded (or created once) on first use."""

    def __init__(
        self,
        secrets: SecretStore | None = None,
        *,
        secret_name: str = DEFAULT_NAMING_SECRET,
        key: bytes | None = None,
    ) -> None:
        if secrets is None and key is None:
            raise ValueError("NamingKey needs a secret store or a key")
        if key is not None and len(key) != _KEY_BYTES:
            raise ValueError("a naming key is 32 bytes")
        self._secrets = secrets
        self._secret_name = secret_name
        self._key = key
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"NamingKey(secret={self._secret_name!r}, key='***')"

    def name_of_digest(self, sha256: bytes) -> bytes:
        """The 32-byte name of content whose raw sha256 is ``sha256``."""
        return hmac.new(self._load(), sha256, hashlib.sha256).digest()

    def name_of_sha256(self, sha256_hex: str) -> str:
        """The hex name of content whose sha256 hex digest is ``sha256_hex``."""
        return self.name_of_digest(bytes.fromhex(sha256_hex)).hex()

    def name_of_bytes(self, data: bytes) -> str:
        """The hex name of ``data``."""
        return self.name_of_digest(hashlib.sha256(data).digest()).hex()

    def _load(self) -> bytes:
        if self._key is not None:
            return self._key
        with self._lock:
            if self._key is None:
                self._key = self._fetch_or_create()
            return self._key

    def _fetch_or_create(self) -> bytes:
        if self._secrets is None:  # pragma: no cover - guarded by __init__
            raise ValueError("no secret store")
        stored = self._secrets.get_platform_secret(self._secret_name)
        if stored is None:
            fresh = base64.b64encode(os.urandom(_KEY_BYTES)).decode()
            # create-only: a concurrent first start may win; everyone then reads its key
            self._secrets.create_platform_secret(self._secret_name, {"key": fresh})
            stored = self._secrets.get_platform_secret(self._secret_name)
        if not stored or "key" not in stored:
            raise RuntimeError(f"platform secret {self._secret_name!r} holds no naming key")
        key = base64.b64decode(stored["key"])
        if len(key) != _KEY_BYTES:
            raise RuntimeError(f"platform secret {self._secret_name!r} is not a 32-byte key")
        return key
