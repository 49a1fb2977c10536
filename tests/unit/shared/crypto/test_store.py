"""The encrypted content-addressed artifact store, with the in-memory key service."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
from pathlib import Path

import pytest

from shared.blob_names import DEFAULT_NAMING_SECRET
from shared.crypto import CHUNK_SIZE, IntegrityError
from shared.errors import InvalidInput, NotFound
from shared.secrets import InMemoryVault
from shared.store import ArtifactStore, Manifest, ManifestFile

SECRET_TEXT = b"the-quick-brown-fox-knows-the-launch-code-4242"


def _keyed_name(store: ArtifactStore, data: bytes) -> str:
    """HMAC-SHA256(naming key, sha256(data)), computed here from the vault's stored key."""
    secret = store.keys.get_platform_secret(DEFAULT_NAMING_SECRET)  # type: ignore[attr-defined]
    key = base64.b64decode(secret["key"])
    return hmac.new(key, hashlib.sha256(data).digest(), hashlib.sha256).hexdigest()


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_put_read_round_trip(store: ArtifactStore, tmp_path: Path) -> None:
    data = os.urandom(3 * CHUNK_SIZE + 123)
    src = tmp_path / "model.bin"
    src.write_bytes(data)
    digest, size = store.put_file(src)
    assert (digest, size) == (_keyed_name(store, data), len(data))
    assert digest != hashlib.sha256(data).hexdigest()
    assert store.has(digest) and store.size(digest) == len(data)
    assert b"".join(store.read(digest)) == data
    assert store.get_to_file(digest, tmp_path / "out" / "copy.bin") == len(data)
    assert (tmp_path / "out" / "copy.bin").read_bytes() == data


def test_put_stream_matches_put_file(store: ArtifactStore, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    src = tmp_path / "f"
    src.write_bytes(data)
    pieces = (data[i : i + 777] for i in range(0, len(data), 777))
    assert store.put_stream(pieces) == store.put_file(src)


def test_empty_content(store: ArtifactStore) -> None:
    digest, size = store.put_stream([])
    assert (digest, size) == (_keyed_name(store, b""), 0)
    assert store.size(digest) == 0 and list(store.read(digest)) == [b""]


def test_dedupe(store: ArtifactStore, tmp_path: Path) -> None:
    data = os.urandom(200_000)
    first = store.put_stream([data])
    blob = store.path_of(first[0])
    before = blob.read_bytes()
    assert store.put_stream([data[:1000], data[1000:]]) == first
    assert blob.read_bytes() == before  # the first writer's blob is kept, not rewritten
    assert list(store.iter_digests()) == [first[0]]
    assert store.total_bytes() == blob.stat().st_size
    assert not any((store.root / "tmp").iterdir())


def test_concurrent_puts_of_same_content(store: ArtifactStore) -> None:
    data = os.urandom(300_000)
    results: list[tuple[str, int]] = []
    errors: list[BaseException] = []

    def put() -> None:
        try:
            results.append(store.put_stream([data]))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=put) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(results)) == 1
    assert list(store.iter_digests()) == [results[0][0]]
    assert b"".join(store.read(results[0][0])) == data


def test_missing_blob(store: ArtifactStore, tmp_path: Path) -> None:
    digest = "ab" * 32
    assert not store.has(digest) and store.size(digest) is None
    with pytest.raises(NotFound):
        list(store.read(digest))
    with pytest.raises(NotFound):
        store.get_to_file(digest, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    assert store.delete(digest) is False
    with pytest.raises(InvalidInput):
        store.has("../../etc/passwd")


@pytest.mark.parametrize("offset", [-1, -40, CHUNK_SIZE + 200])
def test_corruption_detected_and_blob_dropped(
    store: ArtifactStore, tmp_path: Path, offset: int
) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 10)
    digest, _ = store.put_stream([data])
    blob = store.path_of(digest)
    raw = bytearray(blob.read_bytes())
    raw[offset] ^= 0x01
    blob.write_bytes(raw)
    with pytest.raises(IntegrityError):
        store.get_to_file(digest, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not store.has(digest)  # dropped so that a re-fetch heals it
    assert store.put_stream([data])[0] == digest
    assert b"".join(store.read(digest)) == data


def test_blob_under_wrong_name_detected(store: ArtifactStore) -> None:
    """A valid blob moved to another digest's path fails (the digest is bound)."""
    a, _ = store.put_stream([b"content a"])
    b, _ = store.put_stream([b"content b"])
    store.path_of(b).write_bytes(store.path_of(a).read_bytes())
    with pytest.raises(IntegrityError):
        list(store.read(b))
    assert not store.has(b) and store.has(a)


def test_truncated_blob_detected(store: ArtifactStore) -> None:
    digest, _ = store.put_stream([os.urandom(3 * CHUNK_SIZE)])
    blob = store.path_of(digest)
    blob.write_bytes(blob.read_bytes()[: -(CHUNK_SIZE + 16)])
    with pytest.raises(IntegrityError):
        list(store.read(digest))


def test_unwrap_failure_keeps_blob(tmp_path: Path, vault: InMemoryVault) -> None:
    """A key service that cannot unwrap is not proof of corruption: the blob stays."""
    digest, _ = ArtifactStore(tmp_path / "s", vault).put_stream([b"data"])
    stranger = ArtifactStore(tmp_path / "s", InMemoryVault())
    with pytest.raises(IntegrityError):
        list(stranger.read(digest))
    assert stranger.has(digest)


def test_manifest_round_trip_and_materialize(store: ArtifactStore, tmp_path: Path) -> None:
    files = {"config.json": b'{"a": 1}', "weights/model.bin": os.urandom(70_000), "empty": b""}
    entries = []
    for path, data in files.items():
        digest, size = store.put_stream([data])
        entries.append(ManifestFile(path, digest, size))
    manifest = Manifest(source="hf://org/model", revision="c0ffee", files=entries, meta={"k": 1})
    key = store.put_manifest(manifest)
    assert key == _keyed_name(store, manifest.to_json())
    assert store.put_manifest(manifest) == key  # same manifest, same key
    assert store.get_manifest(key) == manifest
    written = store.materialize(key, tmp_path / "ws")
    assert sorted(p.relative_to(tmp_path / "ws").as_posix() for p in written) == sorted(files)
    for path, data in files.items():
        assert (tmp_path / "ws" / path).read_bytes() == data


@pytest.mark.parametrize("bad", ["../escape", "/etc/passwd", "a/../../b", ""])
def test_manifest_refuses_unsafe_paths(store: ArtifactStore, bad: str) -> None:
    digest, size = store.put_stream([b"x"])
    with pytest.raises(InvalidInput):
        store.put_manifest(Manifest("s", "r", [ManifestFile(bad, digest, size)]))


def test_materialize_detects_size_mismatch(store: ArtifactStore, tmp_path: Path) -> None:
    digest, size = store.put_stream([b"12345"])
    key = store.put_manifest(Manifest("s", "r", [ManifestFile("f", digest, size + 1)]))
    with pytest.raises(IntegrityError):
        store.materialize(key, tmp_path / "ws")


def test_no_plaintext_under_root(store: ArtifactStore, tmp_path: Path) -> None:
    """A known plaintext string appears in no file under the store's root."""
    text = (b"header line\n" + SECRET_TEXT + b"\n") * 5000  # several chunks
    src = tmp_path / "dataset.csv"
    src.write_bytes(text)
    digest, _ = store.put_file(src)
    store.put_stream([SECRET_TEXT])
    key = store.put_manifest(
        Manifest("upload://x", SECRET_TEXT.decode(), [ManifestFile("d.csv", digest, len(text))])
    )
    store.materialize(key, tmp_path / "ws")  # outside the root: allowed to hold plaintext
    assert (tmp_path / "ws" / "d.csv").read_bytes() == text
    files = _files_under(store.root)
    assert len(files) == 3
    for path in files:
        content = path.read_bytes()
        assert SECRET_TEXT not in content
        assert SECRET_TEXT[:16] not in content


def test_stale_temp_files_swept(tmp_path: Path, vault: InMemoryVault) -> None:
    store = ArtifactStore(tmp_path / "s", vault)
    stale, fresh = store.root / "tmp" / "old.blob", store.root / "tmp" / "new.blob"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    os.utime(stale, (1, 1))
    ArtifactStore(tmp_path / "s", vault)
    assert not stale.exists() and fresh.exists()


def test_failed_put_leaves_nothing(store: ArtifactStore) -> None:
    def broken():
        yield b"some data"
        raise OSError("network dropped")

    with pytest.raises(OSError):
        store.put_stream(broken())
    assert _files_under(store.root) == []
