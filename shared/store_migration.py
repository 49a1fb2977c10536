"""Moving a store from bare sha256 blob names to keyed names (resumable and idempotent).

Before keyed names (:mod:`shared.blob_names`) a blob was named by the sha256 of its
plaintext and bound that digest. Its successor is the blob of the same content under
``name_for_sha256(old name)``: a function of the old name alone, so every service maps its
own references without a shared journal.

1. **Store** (:func:`migrate_store`, every service that writes the store runs it at start):
   each blob whose header binds its sha256 is re-encrypted under its successor (read and
   verified by its old name, written to ``tmp/`` and linked, as any put), then the old file
   is unlinked. The successor is linked before the old file goes, so a crash at any point
   loses nothing and a rerun finishes the job (a present successor is not written again).
   Processes sharing the directory take turns (``flock`` on ``.naming.lock``); a full pass
   that leaves no old blob writes ``.naming`` and later starts skip the scan.
2. **Databases**: each service maps its references once, in one transaction with a marker
   row (fetcher: ``services.fetcher.naming``; trainer: ``services.trainer.naming``). File
   references map with :func:`successor`; manifest references with
   :func:`migrate_manifest`, since a manifest's content names its files: it is rewritten
   with the successors and stored again (the same bytes, hence the same key, whoever does
   it). The unrewritten copy stays in the store (another service may still need it to map
   its own references).

Old-version processes must be stopped before the upgrade: one writing sha256-named blobs
after the pass would leave blobs the services no longer find (the fetcher re-fetches them).
"""

from __future__ import annotations

import fcntl
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError as DuplicateKey
from sqlmodel import Session, SQLModel

from shared.crypto import IntegrityError, KeyUnwrapError
from shared.db import Database
from shared.errors import NotFound
from shared.store import ArtifactStore, Manifest, ManifestFile

__all__ = [
    "ReferenceMap",
    "StoreMigration",
    "is_digest",
    "migrate_manifest",
    "migrate_store",
    "once",
    "successor",
]

log = logging.getLogger(__name__)

_MARKER = ".naming"
_LOCK = ".naming.lock"
_MARKER_TEXT = "keyed names: HMAC-SHA256(naming key, sha256(plaintext))\n"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class StoreMigration:
    """What one :func:`migrate_store` pass did."""

    renamed: int  #: blobs re-encrypted under their keyed name
    finished: int  #: old blobs whose successor an interrupted pass had already written
    corrupt: int  #: old blobs that failed verification (removed, as any corrupt read does)
    skipped: bool  #: the store was already migrated (marker present)


def successor(store: ArtifactStore, old: str) -> str:
    """The keyed name of the content an old-naming reference ``old`` (its sha256) names."""
    return store.name_for_sha256(old)


def migrate_store(store: ArtifactStore) -> StoreMigration:
    """Re-encrypt every sha256-named blob under its keyed name (see module docstring)."""
    marker = store.root / _MARKER
    if marker.exists():
        return StoreMigration(0, 0, 0, skipped=True)
    with open(store.root / _LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released by the kernel if this process dies
        if marker.exists():  # another process finished while we waited
            return StoreMigration(0, 0, 0, skipped=True)
        renamed = finished = corrupt = 0
        for old in list(store.iter_digests()):
            try:
                if not store.binds_sha256(old):
                    continue
            except FileNotFoundError:
                continue
            except IntegrityError:  # not even a header: a torn or foreign file
                log.warning("store: blob %s has no valid header; left alone", old)
                continue
            new = successor(store, old)
            if store.has(new):
                finished += 1
            else:
                try:
                    stored, _ = store.put_stream(store.read(old))
                except KeyUnwrapError:
                    raise  # the key service is misconfigured: change nothing
                except (IntegrityError, NotFound):
                    corrupt += 1  # read() removed it: its references re-fetch or fail
                    continue
                if stored != new:  # cannot happen unless the file is not what its name says
                    raise IntegrityError(f"blob {old} re-encrypted to {stored}, not {new}")
                renamed += 1
            store.delete(old)
        marker.write_text(_MARKER_TEXT)
    if renamed or finished or corrupt:
        log.info(
            "store: %d blob(s) moved to keyed names (%d finished from an interrupted pass, "
            "%d corrupt removed)",
            renamed,
            finished,
            corrupt,
        )
    return StoreMigration(renamed, finished, corrupt, skipped=False)


def migrate_manifest(store: ArtifactStore, old_key: str) -> str:
    """The key of manifest ``old_key`` rewritten with keyed names (stored if need be).

    A revision equal to one of its files' digests (an URL's or an upload's content digest)
    maps too. A manifest gone from the store maps to its successor name (still dangling)."""
    try:
        manifest = store.get_manifest(successor(store, old_key))
    except NotFound:
        log.warning("store: manifest %s is gone; its references stay dangling", old_key)
        return successor(store, old_key)
    digests = {f.digest for f in manifest.files}
    rewritten = Manifest(
        source=manifest.source,
        revision=(
            successor(store, manifest.revision)
            if manifest.revision in digests
            else manifest.revision
        ),
        files=[ManifestFile(f.path, successor(store, f.digest), f.size) for f in manifest.files],
        meta=manifest.meta,
    )
    return store.put_manifest(rewritten)


def is_digest(value: object) -> bool:
    """True for a 64-hex-digit string (an old sha256 name or a keyed one)."""
    return isinstance(value, str) and bool(_HEX64.match(value))


#: Sources whose artifact is one file: their revision and digest are that file's blob name.
_SINGLE_FILE = ("https://", "http://", "upload://")


class ReferenceMap:
    """Successors of old references, for a service mapping its database (memoised)."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self._manifests: dict[str, str] = {}

    def file(self, old: str) -> str:
        """A file blob's successor."""
        return successor(self.store, old)

    def manifest(self, old: str) -> str:
        """A manifest's successor (rewritten and stored once per process)."""
        if old not in self._manifests:
            self._manifests[old] = migrate_manifest(self.store, old)
        return self._manifests[old]

    def artifact(self, source: str, revision: str, digest: str) -> tuple[str, str]:
        """(revision, digest) of an artifact reference: a one-file source (URL, upload) is
        revised by its content, so both map as a file; else the digest is a manifest key."""
        if source.startswith(_SINGLE_FILE):
            return (self.file(revision) if is_digest(revision) else revision), self.file(digest)
        return revision, self.manifest(digest)

    def artifact_ref(self, ref: dict[str, Any], revision_field: str) -> dict[str, Any]:
        """A JSON artifact reference (an ``ArtifactRef`` dump, a lineage entry), mapped."""
        out = dict(ref)
        if is_digest(out.get("digest")):
            out[revision_field], out["digest"] = self.artifact(
                str(out.get("source") or ""), str(out.get(revision_field) or ""), out["digest"]
            )
        if is_digest(out.get("cache_key")):
            out["cache_key"] = self.manifest(out["cache_key"])
        return out


def once(db: Database, marker: type[SQLModel], step: str, apply: Callable[[Session], None]) -> bool:
    """Run ``apply`` in the transaction that records ``step`` in ``marker``; True if this
    call ran it. A concurrent replica waits on the marker row's key, then skips."""
    with db.session() as session:
        if session.get(marker, step) is not None:
            return False
        session.add(marker(step=step))
        try:
            session.flush()
        except DuplicateKey:
            session.rollback()
            return False
        apply(session)
        session.commit()
    return True
