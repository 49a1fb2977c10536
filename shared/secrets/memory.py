"""In-memory fake of :class:`SecretStore` and :class:`KeyService` — for unit tests only."""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.secrets.base import DataKey, KeyService, SecretStore, SecretValue

__all__ = ["InMemoryVault"]


class InMemoryVault(SecretStore, KeyService):
    """Keeps everything in dicts; wraps data keys with versioned AES-GCM keys like transit."""

    def __init__(self) -> None:
        self._user: dict[tuple[str, str], str] = {}
        self._platform: dict[str, dict[str, str]] = {}
        self._keys: dict[str, list[bytes]] = {}

    def put_user_secret(self, user_id: str, name: str, value: str) -> None:
        self._user[(user_id, name)] = value

    def get_user_secret(self, user_id: str, name: str) -> SecretValue | None:
        value = self._user.get((user_id, name))
        return None if value is None else SecretValue(value)

    def list_user_secrets(self, user_id: str) -> list[str]:
        return sorted(name for uid, name in self._user if uid == user_id)

    def delete_user_secret(self, user_id: str, name: str) -> bool:
        return self._user.pop((user_id, name), None) is not None

    def put_platform_secret(self, name: str, data: dict[str, str]) -> None:
        self._platform[name] = dict(data)

    def get_platform_secret(self, name: str) -> dict[str, str] | None:
        data = self._platform.get(name)
        return None if data is None else dict(data)

    def create_platform_secret(self, name: str, data: dict[str, str]) -> bool:
        if name in self._platform:
            return False
        self._platform[name] = dict(data)
        return True

    def healthy(self) -> bool:
        return True

    def ensure_key(self, key_name: str) -> None:
        self._keys.setdefault(key_name, [AESGCM.generate_key(256)])

    def _wrap(self, key_name: str, plaintext: bytes) -> str:
        self.ensure_key(key_name)
        version = len(self._keys[key_name])
        nonce = os.urandom(12)
        sealed = AESGCM(self._keys[key_name][-1]).encrypt(nonce, plaintext, None)
        return f"fake:v{version}:" + base64.b64encode(nonce + sealed).decode()

    def generate_data_key(self, key_name: str) -> DataKey:
        plaintext = os.urandom(32)
        return DataKey(plaintext=plaintext, wrapped=self._wrap(key_name, plaintext))

    def decrypt_data_key(self, key_name: str, wrapped: str) -> bytes:
        _, version, blob = wrapped.split(":", 2)
        raw = base64.b64decode(blob)
        key = self._keys[key_name][int(version[1:]) - 1]
        return AESGCM(key).decrypt(raw[:12], raw[12:], None)

    def rewrap_data_key(self, key_name: str, wrapped: str) -> str:
        return self._wrap(key_name, self.decrypt_data_key(key_name, wrapped))

    def rotate_key(self, key_name: str) -> None:
        self.ensure_key(key_name)
        self._keys[key_name].append(AESGCM.generate_key(256))
