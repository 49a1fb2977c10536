"""Interfaces of the secret store and the key service."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

__all__ = ["DataKey", "KeyService", "SecretStore", "SecretValue"]


class SecretValue:
    """A secret string whose ``repr``/``str`` never show the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretValue('***')"

    __str__ = __repr__


@dataclass(frozen=True, repr=False)
class DataKey:
    """A fresh data key: ``plaintext`` (32 bytes, never stored) and ``wrapped`` (storable)."""

    plaintext: bytes
    wrapped: str

    def __repr__(self) -> str:
        return f"DataKey(wrapped={self.wrapped[:16]}...)"


class SecretStore(ABC):
    """Named secrets. User secrets are isolated by user id; names are listed, values never."""

    @abstractmethod
    def put_user_secret(self, user_id: str, name: str, value: str) -> None: ...

    @abstractmethod
    def get_user_secret(self, user_id: str, name: str) -> SecretValue | None:
        """The value, or None when the user has no such secret."""

    @abstractmethod
    def list_user_secrets(self, user_id: str) -> list[str]: ...

    @abstractmethod
    def delete_user_secret(self, user_id: str, name: str) -> bool:
        """Delete every version; False when there was nothing to delete."""

    @abstractmethod
    def put_platform_secret(self, name: str, data: dict[str, str]) -> None: ...

    @abstractmethod
    def get_platform_secret(self, name: str) -> dict[str, str] | None: ...

    @abstractmethod
    def create_platform_secret(self, name: str, data: dict[str, str]) -> bool:
        """Write a platform secret only if it does not exist yet (never replaces one).

        True when this call created it; False when it was already there (for instance a
        concurrent first start won)."""

    @abstractmethod
    def healthy(self) -> bool: ...


class KeyService(ABC):
    """Envelope encryption keys; the key-encryption keys never leave the service."""

    @abstractmethod
    def ensure_key(self, key_name: str) -> None:
        """Create the named key-encryption key if missing. Idempotent."""

    @abstractmethod
    def generate_data_key(self, key_name: str) -> DataKey: ...

    @abstractmethod
    def decrypt_data_key(self, key_name: str, wrapped: str) -> bytes: ...

    @abstractmethod
    def rewrap_data_key(self, key_name: str, wrapped: str) -> str:
        """Re-wrap under the newest key version without exposing the plaintext."""

    @abstractmethod
    def rotate_key(self, key_name: str) -> None: ...
