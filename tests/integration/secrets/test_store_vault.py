"""The artifact store with data keys from a real OpenBao transit engine."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest

from shared.blob_names import NamingKey
from shared.secrets.vault import VaultClient
from shared.store import ArtifactStore, Manifest, ManifestFile

pytestmark = pytest.mark.integration


def test_put_read_round_trip_with_rotation(tmp_path: Path, vault: VaultClient) -> None:
    key = f"store-{uuid.uuid4().hex[:8]}"
    store = ArtifactStore(tmp_path / "store", vault, key_name=key)
    data = os.urandom(300_000)
    digest, size = store.put_stream([data])
    assert (digest, size) == (store.name_of_bytes(data), len(data))
    assert digest != hashlib.sha256(data).hexdigest()
    assert b"".join(store.read(digest)) == data

    vault.rotate_key(key)  # blobs wrapped under v1 stay readable
    store.get_to_file(digest, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == data

    other, _ = store.put_stream([b"after rotation"])
    manifest_key = store.put_manifest(
        Manifest("hf://o/m", "abc", [ManifestFile("a", digest, size), ManifestFile("b", other, 14)])
    )
    store.materialize(manifest_key, tmp_path / "ws")
    assert (tmp_path / "ws" / "b").read_bytes() == b"after rotation"
    assert all(
        data[:32] not in p.read_bytes() for p in (tmp_path / "store").rglob("*") if p.is_file()
    )


def test_naming_key_lives_in_vault_and_is_created_once(tmp_path: Path, vault: VaultClient) -> None:
    name = f"naming-{uuid.uuid4().hex[:8]}"
    assert vault.create_platform_secret(name, {"key": "first"})
    assert not vault.create_platform_secret(name, {"key": "second"})  # check-and-set 0
    assert vault.get_platform_secret(name) == {"key": "first"}

    store = ArtifactStore(tmp_path / "s", vault, naming=NamingKey(vault, secret_name=f"{name}-k"))
    digest, _ = store.put_stream([b"weights"])
    again = ArtifactStore(tmp_path / "s", vault, naming=NamingKey(vault, secret_name=f"{name}-k"))
    assert again.put_stream([b"weights"])[0] == digest  # the stored key, not a new one
    assert all(b"weights" not in p.read_bytes() for p in (tmp_path / "s").rglob("*") if p.is_file())
