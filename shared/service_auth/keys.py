"""Where service signing keys live: Vault transit (distributed) or this process (embedded).

Both hold one Ed25519 key per service (``aidp-svc-<service>``, :func:`~.tokens.key_name`).
A service signs with its own key only; every service reads every public key to verify.
"""

from __future__ import annotations

import base64
import logging
import threading
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from shared.errors import TransientError
from shared.service_auth.tokens import key_name

if TYPE_CHECKING:
    from shared.secrets.vault import VaultClient

__all__ = ["InProcessSigningKeys", "SigningKeys", "TransitSigningKeys", "in_process_keys"]

log = logging.getLogger(__name__)


class SigningKeys(ABC):
    """The services' Ed25519 signing keys, versioned (rotation keeps old versions)."""

    @abstractmethod
    def ensure(self, service: str) -> bool:
        """Make sure ``service``'s key exists (create it where allowed); False if it is
        missing and may not be created here (an operator provisions it)."""

    @abstractmethod
    def sign(self, service: str, data: bytes) -> tuple[int, bytes]:
        """``(key version, Ed25519 signature of data)`` with ``service``'s newest key."""

    @abstractmethod
    def public_keys(self, service: str) -> dict[int, Ed25519PublicKey]:
        """Every version of ``service``'s public key; {} when it has no key."""


class InProcessSigningKeys(SigningKeys):
    """Keys generated in memory, never written anywhere: embedded mode, where every
    internal call stays in this process (``inproc://``)."""

    def __init__(self) -> None:
        self._keys: dict[str, Ed25519PrivateKey] = {}
        self._lock = threading.Lock()

    def _key(self, service: str) -> Ed25519PrivateKey:
        with self._lock:
            if service not in self._keys:
                key_name(service)  # validates the name
                self._keys[service] = Ed25519PrivateKey.generate()
            return self._keys[service]

    def ensure(self, service: str) -> bool:
        self._key(service)
        return True

    def sign(self, service: str, data: bytes) -> tuple[int, bytes]:
        return 1, self._key(service).sign(data)

    def public_keys(self, service: str) -> dict[int, Ed25519PublicKey]:
        with self._lock:
            key = self._keys.get(service)
        return {} if key is None else {1: key.public_key()}


_PROCESS_KEYS = InProcessSigningKeys()


def in_process_keys() -> InProcessSigningKeys:
    """This process's keys (shared by every embedded service of the process)."""
    return _PROCESS_KEYS


class TransitSigningKeys(SigningKeys):
    """Ed25519 keys of Vault's transit engine: ``transit/sign/aidp-svc-<service>`` is allowed
    to that service's policy alone; ``transit/keys/aidp-svc-*`` (public keys) to every one."""

    def __init__(self, vault: VaultClient) -> None:
        self.vault = vault

    def ensure(self, service: str) -> bool:
        return self.vault.ensure_signing_key(key_name(service))

    def sign(self, service: str, data: bytes) -> tuple[int, bytes]:
        signature = self.vault.sign(key_name(service), data)
        prefix, version, encoded = signature.split(":", 2)
        if prefix != "vault" or not version.startswith("v"):
            raise TransientError(f"vault answered an unexpected signature for {service}")
        return int(version[1:]), base64.b64decode(encoded)

    def public_keys(self, service: str) -> dict[int, Ed25519PublicKey]:
        return {
            version: Ed25519PublicKey.from_public_bytes(base64.b64decode(raw))
            for version, raw in self.vault.public_keys(key_name(service)).items()
        }
