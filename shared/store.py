"""The encrypted, content-addressed artifact store (ciphertext only under its root).

Layout under ``root``::

    blobs/ab/cdef…   one encrypted blob per distinct plaintext, named by its keyed name
    holds/<name>/…   who else needs a blob (:mod:`shared.blob_holds`; eviction skips it)
    tmp/             blobs being written (renamed into blobs/ when complete)
    .naming          written once no blob of the old (sha256) naming is left

A blob's name is ``HMAC-SHA256(naming key, sha256(plaintext))`` hex (:mod:`shared.blob_names`):
listing the store confirms no guess of a file's content without the key, which lives in the
secret store. Every blob is a :mod:`shared.crypto` stream with its own data key, generated
and wrapped by the :class:`~shared.secrets.KeyService` under ``key_name``; the final chunk
binds the name (``FLAG_BINDS_NAME``), so reading a blob by its name verifies its content
without hashing it again (and without the naming key). Plaintext is encrypted while it
streams in (hashing as it goes) into ``tmp/`` and then linked to its name; identical content
is stored once per installation, and concurrent puts of the same content (threads or
processes sharing the directory) are safe.

A manifest (one per source and resolved revision) is a JSON document stored as a blob too;
its key is its own name. A corrupt blob is removed when a read detects it, so fetching the
content again heals the store. Stores written before keyed names (blobs named by the bare
sha256, binding it) are converted by :mod:`shared.store_migration`.

A full disk never leaves a partial blob: a write whose size is known is refused before it
starts when the disk lacks room for it plus ``min_free_bytes``, and a write that runs out of
space midway (``ENOSPC``) removes its temporary file; both raise :class:`DiskFull`, whose
message names the store's directory and the space free and needed.
"""

from __future__ import annotations

import errno
import json
import mmap
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from shared.blob_holds import BlobHolds
from shared.blob_names import NamingKey
from shared.crypto import (
    CHUNK_SIZE,
    FLAG_BINDS_SHA256,
    EncryptResult,
    IntegrityError,
    KeyUnwrapError,
    atomic_writer,
    decrypt_buffer,
    encrypt_reader,
    encrypt_stream,
    fsync_dir,
    plaintext_size,
    read_header,
)
from shared.direct_write import DirectFile
from shared.errors import AidpError, InvalidInput, NotFound
from shared.secrets.base import KeyService, SecretStore

__all__ = ["ArtifactStore", "DiskFull", "Manifest", "ManifestFile", "format_bytes"]

#: Space a write must leave free on the store's disk (other writers, the database, logs).
DEFAULT_MIN_FREE_BYTES = 16 * 1024 * 1024


def format_bytes(n: float) -> str:
    """``n`` bytes for people (binary units, one decimal)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class DiskFull(AidpError):
    """The disk under a store (or a scratch directory) has no room for a write; nothing of
    the write is left behind. ``free``/``needed`` in bytes (``needed`` 0 when unknown)."""

    def __init__(self, where: Path, *, free: int, needed: int = 0) -> None:
        need = f", {format_bytes(needed)} needed" if needed else ""
        super().__init__(
            f"The disk holding {where} is full ({format_bytes(free)} free{need}): free space "
            "there, or lower the cache budget (AIDP_CACHE_MAX_GB), and run again.",
            code="disk_full",
        )
        self.where, self.free, self.needed = where, free, needed

    @classmethod
    def check(cls, where: Path, needed: int, *, min_free: int = 0) -> None:
        """Raise unless the disk holding ``where`` has ``needed`` + ``min_free`` bytes free."""
        free = shutil.disk_usage(where).free
        if free < needed + min_free:
            raise cls(where, free=free, needed=needed)

    @staticmethod
    def is_enospc(exc: BaseException) -> bool:
        return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_STALE_TMP_SECONDS = 3600


@dataclass(frozen=True)
class ManifestFile:
    """One file of an artifact: its relative POSIX ``path``, blob name ``digest``, ``size``."""

    path: str
    digest: str
    size: int


@dataclass
class Manifest:
    """The files of one artifact at one resolved revision, plus free-form ``meta``."""

    source: str
    revision: str
    files: list[ManifestFile] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        """Canonical JSON (sorted keys, no spaces): equal manifests have equal keys."""
        doc = {
            "source": self.source,
            "revision": self.revision,
            "files": [{"path": f.path, "digest": f.digest, "size": f.size} for f in self.files],
            "meta": self.meta,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        try:
            doc = json.loads(data)
            return cls(
                source=doc["source"],
                revision=doc["revision"],
                files=[ManifestFile(f["path"], f["digest"], int(f["size"])) for f in doc["files"]],
                meta=dict(doc.get("meta") or {}),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput("not a manifest") from exc


def _check_digest(digest: str) -> str:
    if not _DIGEST.match(digest):
        raise InvalidInput(f"not a blob name (64 hex digits): {digest!r}")
    return digest


def _safe_relative(path: str) -> PurePosixPath:
    rel = PurePosixPath(path)
    if not path or rel.is_absolute() or ".." in rel.parts or "\\" in path or "\x00" in path:
        raise InvalidInput(f"unsafe path in manifest: {path!r}")
    return rel


class ArtifactStore:
    """Encrypted content-addressed blobs and manifests under ``root`` (see module docstring)."""

    def __init__(
        self,
        root: Path,
        keys: KeyService,
        key_name: str = "aidp-artifacts",
        *,
        naming: NamingKey | None = None,
        chunk_size: int = CHUNK_SIZE,
        min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
    ) -> None:
        """``naming``: the blob-naming key; by default the platform secret of ``keys`` when
        it is also a :class:`SecretStore` (as Vault and the in-memory fake are).
        ``min_free_bytes``: room a write of known size must leave on the disk."""
        self.root = Path(root)
        self.keys = keys
        if naming is None:
            if not isinstance(keys, SecretStore):
                raise TypeError("ArtifactStore needs a NamingKey when keys is no SecretStore")
            naming = NamingKey(keys)
        self.naming = naming
        self.key_name = key_name
        self.chunk_size = chunk_size
        self.min_free_bytes = min_free_bytes
        self._blobs = self.root / "blobs"
        self._tmp = self.root / "tmp"
        self.holds = BlobHolds(self.root / "holds")  # blobs other services reference
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._key_ready = False
        self._key_lock = threading.Lock()
        self._sweep_tmp()

    # -- blobs ---------------------------------------------------------------------------

    def path_of(self, digest: str) -> Path:
        """Where the blob of ``digest`` lives (whether or not it exists)."""
        _check_digest(digest)
        return self._blobs / digest[:2] / digest[2:]

    def put_file(self, path: Path) -> tuple[str, int]:
        """Store a file's content; returns (its blob name, size). Raises DiskFull before
        writing when the disk lacks room for it."""
        with open(path, "rb", buffering=0) as inp:
            self.ensure_room(os.fstat(inp.fileno()).st_size)
            return self._put(lambda out, **kw: encrypt_reader(inp, out, **kw))

    def ensure_room(self, plaintext_bytes: int) -> None:
        """Raise DiskFull unless ``plaintext_bytes`` (encrypted: a little more) fit on the
        store's disk with ``min_free_bytes`` to spare."""
        overhead = plaintext_bytes // 256 + 4096  # chunk tags and the header
        DiskFull.check(self.root, plaintext_bytes + overhead, min_free=self.min_free_bytes)

    def put_stream(self, chunks: Iterable[bytes | bytearray | memoryview]) -> tuple[str, int]:
        """Store the concatenation of ``chunks`` (streamed, never held whole in memory)."""
        return self._put(lambda out, **kw: encrypt_stream(chunks, out, **kw))

    def name_for_sha256(self, sha256_hex: str) -> str:
        """The blob name of content whose sha256 is ``sha256_hex`` (stored or not)."""
        return self.naming.name_of_sha256(_check_digest(sha256_hex))

    def name_of_bytes(self, data: bytes) -> str:
        """The blob name ``data`` has (or would have) in this store."""
        return self.naming.name_of_bytes(data)

    def binds_sha256(self, digest: str) -> bool:
        """True for a blob of the old naming (named by, and binding, its bare sha256)."""
        with open(self.path_of(digest), "rb") as fh:
            return bool(read_header(fh).flags & FLAG_BINDS_SHA256)

    def has(self, digest: str) -> bool:
        return self.path_of(digest).is_file()

    def size(self, digest: str) -> int | None:
        """Plaintext size of a stored blob (from its layout), or None if absent."""
        path = self.path_of(digest)
        try:
            with open(path, "rb") as fh:
                header = read_header(fh)
                return plaintext_size(os.fstat(fh.fileno()).st_size, header)
        except FileNotFoundError:
            return None

    def read(self, digest: str) -> Iterator[bytes]:
        """Yield the plaintext chunk by chunk, each verified before it is released.

        Raises NotFound if absent and IntegrityError if corrupt (the blob is then removed).
        """
        path = self.path_of(digest)
        try:
            fh = open(path, "rb", buffering=0)
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the store") from None
        with fh:
            try:
                yield from self._decrypt(fh, digest)
            except IntegrityError as exc:
                self._drop_corrupt(path, fh, exc)
                raise

    def _decrypt(self, fh: IO[bytes], digest: str) -> Iterator[bytes]:
        """Decrypt from a read-only mapping of the blob (no copy of the ciphertext).

        Blobs are never modified in place (only created by rename/link and unlinked), so the
        mapping cannot shrink under the reader.
        """
        if os.fstat(fh.fileno()).st_size == 0:
            raise IntegrityError(f"blob {digest} is empty")
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        if hasattr(mmap, "MADV_SEQUENTIAL"):
            mapped.madvise(mmap.MADV_SEQUENTIAL)
        try:
            yield from decrypt_buffer(mapped, self._unwrap, expected_digest=digest)
        finally:
            try:
                mapped.close()
            except BufferError:  # a traceback still holds a view: closed when collected
                pass

    def get_to_file(self, digest: str, dest: Path) -> int:
        """Decrypt a blob to ``dest`` atomically (nothing at ``dest`` unless verified)."""
        with atomic_writer(Path(dest)) as out:
            return self._read_into(digest, out)

    def delete(self, digest: str) -> bool:
        """Remove a blob; False if it was not there."""
        try:
            self.path_of(digest).unlink()
        except FileNotFoundError:
            return False
        return True

    def iter_digests(self) -> Iterator[str]:
        """Every stored blob name (blobs and manifests alike), in no particular order."""
        for sub in self._blobs.iterdir():
            if len(sub.name) != 2 or not sub.is_dir():
                continue
            for blob in sub.iterdir():
                digest = sub.name + blob.name
                if _DIGEST.match(digest):
                    yield digest

    def total_bytes(self) -> int:
        """Bytes the blobs take on disk (ciphertext)."""
        total = 0
        for digest in self.iter_digests():
            try:
                total += self.path_of(digest).stat().st_size
            except FileNotFoundError:
                pass
        return total

    # -- manifests -----------------------------------------------------------------------

    def put_manifest(self, manifest: Manifest) -> str:
        """Store a manifest; returns its key (the blob name of its canonical JSON)."""
        for f in manifest.files:
            _safe_relative(f.path)
            _check_digest(f.digest)
        key, _ = self.put_stream([manifest.to_json()])
        return key

    def get_manifest(self, key: str) -> Manifest:
        return Manifest.from_json(b"".join(self.read(key)))

    def materialize(self, key: str, dest_dir: Path) -> list[Path]:
        """Decrypt every file of a manifest under ``dest_dir``; returns the written paths."""
        manifest = self.get_manifest(key)
        dest_dir = Path(dest_dir)
        written = []
        for f in manifest.files:
            target = dest_dir.joinpath(*_safe_relative(f.path).parts)
            size = self.get_to_file(f.digest, target)
            if size != f.size:
                raise IntegrityError(f"{f.path}: size {size} differs from the manifest's {f.size}")
            written.append(target)
        return written

    # -- internals -----------------------------------------------------------------------

    def _put(self, encrypt: Callable[..., EncryptResult]) -> tuple[str, int]:
        self._ensure_key()
        data_key = self.keys.generate_data_key(self.key_name)
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, suffix=".blob")
        tmp = Path(tmp_name)
        try:
            # the disk writes the blob while it is being encrypted, straight from this
            # process's buffer (shared.direct_write): the fsync below waits for the tail
            with DirectFile(fd, "wb") as out:
                result = encrypt(
                    out,
                    data_key=data_key.plaintext,
                    wrapped_key=data_key.wrapped,
                    key_name=self.key_name,
                    chunk_size=self.chunk_size,
                    name_of=self.naming.name_of_digest,
                )
                out.flush()
                os.fsync(out.fileno())
            digest = result.name
            if digest is None:  # name_of always names
                raise RuntimeError("encryption returned no name")
            final = self.path_of(digest)
            final.parent.mkdir(exist_ok=True)
            try:
                os.link(tmp, final)  # fails if present: the first writer wins, no overwrite
            except FileExistsError:
                pass
            except OSError:  # a filesystem without hard links
                if not final.exists():
                    os.replace(tmp, final)
            fsync_dir(final.parent)
            return digest, result.size
        except OSError as exc:
            if DiskFull.is_enospc(exc):  # the temporary file goes in ``finally``
                raise DiskFull(self.root, free=shutil.disk_usage(self.root).free) from None
            raise
        finally:
            tmp.unlink(missing_ok=True)

    def _read_into(self, digest: str, out: IO[bytes]) -> int:
        size = 0
        for plain in self.read(digest):
            out.write(plain)
            size += len(plain)
        return size

    def _unwrap(self, key_name: str, wrapped: str) -> bytes:
        return self.keys.decrypt_data_key(key_name, wrapped)

    def _ensure_key(self) -> None:
        if self._key_ready:
            return
        with self._key_lock:
            if not self._key_ready:
                self.keys.ensure_key(self.key_name)
                self._key_ready = True

    @staticmethod
    def _drop_corrupt(path: Path, fh: IO[bytes], exc: IntegrityError) -> None:
        """Remove a blob proven corrupt (not one the key service merely failed to unwrap)."""
        if isinstance(exc, KeyUnwrapError):
            return
        try:
            if os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino:  # not already replaced
                path.unlink()
        except FileNotFoundError:
            pass

    def _sweep_tmp(self) -> None:
        """Remove temp files left by writers that died (untouched for an hour)."""
        cutoff = time.time() - _STALE_TMP_SECONDS
        for tmp in self._tmp.iterdir():
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
            except FileNotFoundError:
                pass
