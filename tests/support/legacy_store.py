"""Writing blobs the way stores did before keyed names (named by, and binding, the sha256)."""

from __future__ import annotations

import hashlib

from shared.crypto import encrypt_stream
from shared.store import ArtifactStore, Manifest

__all__ = ["put_legacy", "put_legacy_manifest"]


def put_legacy(store: ArtifactStore, data: bytes) -> str:
    """Store ``data`` under its bare sha256, as the old store did; returns that name."""
    store.keys.ensure_key(store.key_name)
    key = store.keys.generate_data_key(store.key_name)
    digest = hashlib.sha256(data).hexdigest()
    path = store.path_of(digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        encrypt_stream(
            [data],
            out,
            data_key=key.plaintext,
            wrapped_key=key.wrapped,
            key_name=store.key_name,
            chunk_size=store.chunk_size,
            bind_sha256=True,
        )
    return digest


def put_legacy_manifest(store: ArtifactStore, manifest: Manifest) -> str:
    return put_legacy(store, manifest.to_json())
