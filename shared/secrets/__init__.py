"""Secrets and keys behind one interface: Vault/OpenBao in real use, a fake for unit tests.

- :class:`SecretStore` — per-user secrets (KV v2 under ``users/<user_id>/<name>``) and
  platform secrets (``platform/<name>``).
- :class:`KeyService` — envelope-encryption data keys (transit): generate, decrypt,
  rewrap, rotate; and key material the platform needs kept out of the database.

Values never go to the database, events, logs or API responses: only names do.
"""

from __future__ import annotations

from shared.secrets.base import DataKey, KeyService, SecretStore, SecretValue
from shared.secrets.memory import InMemoryVault

__all__ = ["DataKey", "InMemoryVault", "KeyService", "SecretStore", "SecretValue", "connect_vault"]


def connect_vault(settings: object) -> tuple[SecretStore, KeyService]:
    """Build the store and key service from settings (see ``shared.secrets.vault``)."""
    from shared.secrets.vault import VaultClient

    client = VaultClient.from_settings(settings)  # type: ignore[arg-type]
    return client, client
