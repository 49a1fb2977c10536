"""Keyed blob names: they hide the content's digest, and old stores migrate to them."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from shared.blob_names import DEFAULT_NAMING_SECRET, NamingKey
from shared.secrets import InMemoryVault
from shared.store import ArtifactStore, Manifest, ManifestFile
from shared.store_migration import migrate_manifest, migrate_store, successor
from tests.support.legacy_store import put_legacy, put_legacy_manifest


def _blob_files(store: ArtifactStore) -> set[str]:
    return set(store.iter_digests())


def test_names_hide_the_sha256_and_depend_on_the_key(tmp_path: Path) -> None:
    data = b"a file someone might guess"
    one, _ = ArtifactStore(tmp_path / "a", InMemoryVault()).put_stream([data])
    two, _ = ArtifactStore(tmp_path / "b", InMemoryVault()).put_stream([data])
    assert hashlib.sha256(data).hexdigest() not in {one, two}
    assert one != two  # same content, different installations' keys


def test_same_key_same_name_and_content_is_stored_once(tmp_path: Path) -> None:
    vault = InMemoryVault()
    first = ArtifactStore(tmp_path / "s", vault)
    second = ArtifactStore(tmp_path / "s", vault)  # another process of the installation
    data = os.urandom(70_000)
    assert first.put_stream([data]) == second.put_stream([data[:10], data[10:]])
    assert len(_blob_files(first)) == 1
    name, _ = first.put_stream([data])
    assert b"".join(second.read(name)) == data


def test_naming_key_is_created_once_and_never_replaced() -> None:
    vault = InMemoryVault()
    first = NamingKey(vault).name_of_bytes(b"x")
    stored = vault.get_platform_secret(DEFAULT_NAMING_SECRET)
    assert stored is not None and set(stored) == {"key"}
    assert not vault.create_platform_secret(DEFAULT_NAMING_SECRET, {"key": "other"})
    assert NamingKey(vault).name_of_bytes(b"x") == first
    assert stored["key"] not in repr(NamingKey(vault))


def test_naming_key_rejects_a_malformed_secret() -> None:
    vault = InMemoryVault()
    vault.put_platform_secret(DEFAULT_NAMING_SECRET, {"key": "c2hvcnQ="})
    with pytest.raises(RuntimeError, match="32-byte"):
        NamingKey(vault).name_of_bytes(b"x")


def test_migration_renames_every_old_blob_and_rewrites_manifests(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "s", InMemoryVault())
    files = {"config.json": b'{"a": 1}', "weights.bin": os.urandom(200_000)}
    old = {path: put_legacy(store, data) for path, data in files.items()}
    manifest = Manifest(
        source="https://example.org/w.bin",
        revision=old["weights.bin"],
        files=[ManifestFile(p, d, len(files[p])) for p, d in old.items()],
    )
    old_manifest = put_legacy_manifest(store, manifest)
    fresh, _ = store.put_stream([b"written after the upgrade"])

    report = migrate_store(store)
    assert (report.renamed, report.finished, report.corrupt) == (3, 0, 0)
    names = _blob_files(store)
    assert not names & {*old.values(), old_manifest}  # no sha256 name is left
    assert {successor(store, d) for d in old.values()} | {fresh} <= names
    for path, data in files.items():
        assert b"".join(store.read(successor(store, old[path]))) == data
        assert not store.binds_sha256(successor(store, old[path]))

    new_manifest = migrate_manifest(store, old_manifest)
    assert migrate_manifest(store, old_manifest) == new_manifest  # same bytes, same key
    rewritten = store.get_manifest(new_manifest)
    assert rewritten.revision == successor(store, old["weights.bin"])
    written = store.materialize(new_manifest, tmp_path / "out")
    assert {p.read_bytes() for p in written} == set(files.values())

    assert migrate_store(store).skipped  # marker: later starts skip the scan


def test_interrupted_migration_resumes_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ArtifactStore(tmp_path / "s", InMemoryVault())
    contents = [os.urandom(1000 + i) for i in range(6)]
    old = [put_legacy(store, data) for data in contents]

    deletes = 0
    real_delete = store.delete

    def crash_on_third_delete(name: str) -> bool:
        nonlocal deletes
        deletes += 1
        if deletes == 3:  # killed after linking a successor, before removing the old blob
            raise KeyboardInterrupt
        return real_delete(name)

    monkeypatch.setattr(store, "delete", crash_on_third_delete)
    with pytest.raises(KeyboardInterrupt):
        migrate_store(store)
    monkeypatch.undo()
    assert not (store.root / ".naming").exists()
    left = [d for d in old if store.has(d)]
    assert len(left) == 4  # two done; the third has both names; three untouched

    report = migrate_store(ArtifactStore(tmp_path / "s", store.keys))  # a new process
    assert (report.renamed, report.finished) == (3, 1)
    assert not any(store.has(d) for d in old)
    for digest, data in zip(old, contents, strict=True):
        assert b"".join(store.read(successor(store, digest))) == data


def test_corrupt_old_blob_is_dropped_not_migrated(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "s", InMemoryVault())
    good, bad = put_legacy(store, b"good" * 100), put_legacy(store, b"bad" * 100)
    path = store.path_of(bad)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    report = migrate_store(store)
    assert (report.renamed, report.corrupt) == (1, 1)
    assert _blob_files(store) == {successor(store, good)}
