"""The artifact cache index: manifests, blob references, pins, LRU budget and leases.

Blobs live encrypted in the :class:`~shared.store.ArtifactStore`; this module keeps the
database side. An artifact row is written only after every blob and the manifest are in
the store, so a download killed midway leaves nothing half-recorded.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from services.fetcher.errors import FetchFailed
from services.fetcher.models import (
    Alias,
    Artifact,
    ArtifactFile,
    FetchJob,
    Lease,
    Pin,
    Resolution,
    Upload,
    utcnow,
)
from services.fetcher.quota import StorageQuota
from shared.crypto import IntegrityError as BlobCorrupt
from shared.db import Database
from shared.errors import NotFound
from shared.service.leases import KeyLeases
from shared.store import ArtifactStore, DiskFull, ManifestFile
from shared.urls import public_url

__all__ = ["ArtifactCache"]


class ArtifactCache:
    """Database index over the encrypted store (see module docstring)."""

    def __init__(
        self,
        *,
        db: Database,
        store: ArtifactStore,
        max_bytes: int,
        lease_seconds: float,
        verify: bool = False,
        user_quota_bytes: int = 0,
    ) -> None:
        self.db = db
        self.quota = StorageQuota(db, user_quota_bytes)
        self.store = store
        self.max_bytes = max_bytes
        self.verify = verify
        self.holder = uuid.uuid4().hex
        self.leases = KeyLeases(db, Lease, instance=self.holder, seconds=lease_seconds)

    # -- lookups -------------------------------------------------------------------------

    def find_complete(self, key: str) -> Artifact | None:
        """The artifact if recorded and every blob is present (and verifies, if asked)."""
        with self.db.session() as s:
            art = s.get(Artifact, key)
            if art is None:
                return None
            digests = [
                f.digest
                for f in s.exec(select(ArtifactFile).where(ArtifactFile.artifact_key == key))
            ]
        for digest in [art.cache_key, *digests]:
            if not self._blob_ok(digest):
                return None
        return art

    def _blob_ok(self, digest: str) -> bool:
        if not self.store.has(digest):
            return False
        if self.verify:
            try:
                for _ in self.store.read(digest):
                    pass
            except (BlobCorrupt, NotFound):
                return False
        return True

    def digest_for(self, aliases: Iterable[str]) -> str | None:
        """A stored digest known under one of ``aliases`` (content seen before)."""
        aliases = list(aliases)
        if not aliases:
            return None
        with self.db.session() as s:
            rows = s.exec(select(Alias).where(Alias.alias.in_(aliases))).all()  # type: ignore[attr-defined]
        for row in rows:
            if self.store.has(row.digest):
                return row.digest
        return None

    def add_aliases(self, aliases: Iterable[str], digest: str) -> None:
        with self.db.session() as s:
            for alias in aliases:
                existing = s.get(Alias, alias)
                if existing is None:
                    s.add(Alias(alias=alias, digest=digest))
                else:
                    existing.digest = digest
            try:
                s.commit()
            except IntegrityError:
                s.rollback()  # a concurrent writer recorded the same alias

    # -- floating refs -------------------------------------------------------------------

    def remember_resolution(self, key: str, revision: str) -> None:
        """Record that ``key`` (``<name>@<floating ref>``) resolved to ``revision`` now."""
        with self.db.session() as s:
            row = s.get(Resolution, key)
            if row is None:
                s.add(Resolution(key=key, revision=revision))
            else:
                row.revision, row.resolved_at = revision, utcnow()
            try:
                s.commit()
            except IntegrityError:
                s.rollback()  # a concurrent fetch recorded it; either answer is as recent

    def last_resolution(self, key: str) -> Resolution | None:
        """The last recorded resolution of ``key``, if any."""
        with self.db.session() as s:
            return s.get(Resolution, key)

    # -- recording -----------------------------------------------------------------------

    def record(
        self,
        *,
        key: str,
        source: str,
        kind: str,
        revision: str,
        manifest_key: str,
        digest: str,
        files: list[ManifestFile],
        credentialed: bool = False,
        owner_id: str | None = None,
    ) -> Artifact:
        """Record a complete artifact (replacing a stale row of the same key).

        ``credentialed``: fetched with the requester's credentials, so each later hit is
        authorised with the new requester's own (see ``Fetcher``). ``owner_id``: the user
        whose fetch or upload stored it (per-owner eviction, :meth:`make_room`)."""
        art = Artifact(
            key=key,
            source=source,
            kind=kind,
            resolved_revision=revision,
            cache_key=manifest_key,
            digest=digest,
            size_bytes=sum(f.size for f in files),
            credentialed=credentialed,
            owner_id=owner_id,
        )
        with self.db.session() as s:
            s.execute(delete(ArtifactFile).where(ArtifactFile.artifact_key == key))  # type: ignore[arg-type]
            s.execute(delete(Artifact).where(Artifact.key == key))  # type: ignore[arg-type]
            s.add(art)
            for f in files:
                s.add(ArtifactFile(artifact_key=key, path=f.path, digest=f.digest, size=f.size))
            s.commit()
        return art

    def mark_public(self, key: str) -> None:
        """Anonymous access reached the entry: later hits need no credential check."""
        with self.db.session() as s:
            s.execute(update(Artifact).where(Artifact.key == key).values(credentialed=False))  # type: ignore[arg-type]
            s.commit()

    def touch(self, key: str) -> None:
        with self.db.session() as s:
            s.execute(update(Artifact).where(Artifact.key == key).values(last_used_at=utcnow()))  # type: ignore[arg-type]
            s.commit()

    def pin(self, run_id: uuid.UUID, key: str) -> None:
        with self.db.session() as s:
            if s.get(Pin, (run_id, key)) is None:
                s.add(Pin(run_id=run_id, artifact_key=key))
                try:
                    s.commit()
                except IntegrityError:
                    s.rollback()

    def unpin(self, run_id: uuid.UUID) -> None:
        with self.db.session() as s:
            s.execute(delete(Pin).where(Pin.run_id == run_id))  # type: ignore[arg-type]
            s.commit()

    # -- budget --------------------------------------------------------------------------

    def usage(self) -> int:
        """Plaintext bytes of the distinct blobs the cache references (uploads included)."""
        with self.db.session() as s:
            sizes: dict[str, int] = {
                d: int(n)
                for d, n in s.execute(
                    select(ArtifactFile.digest, func.max(ArtifactFile.size)).group_by(
                        ArtifactFile.digest
                    )
                ).all()
            }
            for upload in s.exec(select(Upload)):
                sizes[upload.digest] = upload.size_bytes
        return sum(sizes.values())

    def make_room(
        self, needed: int, *, keep: Iterable[str] = (), requester: str | None = None
    ) -> None:
        """Evict unpinned artifacts until ``needed`` more bytes fit, in this order:

        1. the requester's own entries (stored by their fetches), least recently used first;
        2. shared ones: fetched anonymously, or stored before owners were kept (LRU);
        3. other users' credentialed entries (LRU): a cache, not storage, so a budget full
           of someone's leftovers cannot block everyone.

        A pinned artifact (one an active run of anyone uses) is never evicted, nor an
        upload's entry (its blob stays for its owner, so evicting it frees nothing); what
        one tenant holds is bounded by its storage quota (:mod:`services.fetcher.quota`).
        Raises FetchFailed ("disk budget exceeded") when even that is not enough.
        """
        keep = set(keep)
        if needed > self.max_bytes:
            raise FetchFailed(self._budget_message(needed))
        while self.usage() + needed > self.max_bytes:
            victim = self._next_victim(keep, requester)
            if victim is None:
                raise FetchFailed(self._budget_message(needed))
            self.evict(victim)

    def make_disk_room(
        self, needed: int, *, keep: Iterable[str] = (), requester: str | None = None
    ) -> None:
        """Evict unpinned artifacts (in :meth:`make_room`'s order) until the store's disk
        has room for ``needed`` more bytes; raises DiskFull when even that is not enough."""
        keep = set(keep)
        while True:
            try:
                self.store.ensure_room(needed)
                return
            except DiskFull:
                victim = self._next_victim(keep, requester)
                if victim is None:
                    raise
                self.evict(victim)

    def _next_victim(self, keep: set[str], requester: str | None) -> str | None:
        with self.db.session() as s:
            pinned = set(s.exec(select(Pin.artifact_key)).all())
            rows = s.exec(select(Artifact).order_by(Artifact.last_used_at)).all()  # type: ignore[arg-type]
        candidates = [
            a
            for a in rows
            if a.key not in pinned and a.key not in keep and not a.source.startswith("upload://")
        ]

        def tier(a: Artifact) -> int:
            if requester is not None and a.owner_id == requester:
                return 0
            if a.owner_id is None or not a.credentialed:
                return 1
            return 2

        # sorted() is stable: least recently used first within each tier
        ordered = sorted(candidates, key=tier)
        return ordered[0].key if ordered else None

    def _budget_message(self, needed: int) -> str:
        gb = 1024**3
        return (
            f"Disk budget exceeded: this artifact needs {needed / gb:.2f} GB but the cache "
            f"budget is {self.max_bytes / gb:.2f} GB (AIDP_CACHE_MAX_GB) and "
            f"{self.usage() / gb:.2f} GB is held by artifacts that active runs use. Raise "
            "the budget or wait for other runs to finish."
        )

    def evict(self, key: str) -> None:
        """Forget an artifact and delete the blobs no other artifact or upload references
        and no other service holds (:mod:`shared.blob_holds`)."""
        with self.db.session() as s:
            art = s.get(Artifact, key)
            if art is None:
                return
            digests = {
                f.digest
                for f in s.exec(select(ArtifactFile).where(ArtifactFile.artifact_key == key))
            }
            s.execute(delete(ArtifactFile).where(ArtifactFile.artifact_key == key))  # type: ignore[arg-type]
            s.delete(art)
            s.commit()
            still = set(
                s.exec(
                    select(ArtifactFile.digest).where(ArtifactFile.digest.in_(digests))  # type: ignore[attr-defined]
                ).all()
            )
            still |= set(s.exec(select(Upload.digest).where(Upload.digest.in_(digests))).all())  # type: ignore[attr-defined]
            manifests_left = s.exec(
                select(Artifact).where(Artifact.cache_key == art.cache_key)
            ).first()
        for digest in digests - still:
            if not self.store.holds.is_held(digest):  # e.g. a LoRA version's base/ files
                self.store.delete(digest)
        if manifests_left is None:
            self.store.delete(art.cache_key)

    # -- single flight -------------------------------------------------------------------

    def acquire(self, key: str) -> bool:
        """Take the download lease for ``key`` (True) unless a live holder has it."""
        return self.leases.claim(key)

    def renew(self, key: str) -> None:
        self.leases.renew(key)

    def release(self, key: str) -> None:
        self.leases.release(key)

    # -- listing -------------------------------------------------------------------------

    def listing(
        self, *, project_ids: Iterable[uuid.UUID] | None = None, user_id: str | None = None
    ) -> list[dict[str, Any]]:
        """``GET /internal/artifacts`` rows.

        ``project_ids``: only artifacts a run of one of these projects uses (a pin of one of
        their fetch jobs); None lists all. An upload's digest, revision and manifest key are
        shown to its uploader (``user_id``) only; an URL is shown without its query string,
        fragment or user info.
        """
        with self.db.session() as s:
            pins = s.exec(select(Pin.artifact_key, Pin.run_id)).all()
            pinned = {key for key, _ in pins}
            arts = s.exec(select(Artifact).order_by(Artifact.last_used_at.desc())).all()  # type: ignore[attr-defined]
            if project_ids is not None:
                wanted = set(project_ids)
                runs = (
                    set(
                        s.exec(
                            select(FetchJob.run_id).where(
                                FetchJob.project_id.in_(wanted)  # type: ignore[union-attr]
                            )
                        ).all()
                    )
                    if wanted
                    else set()
                )
                used = {key for key, run_id in pins if run_id in runs}
                arts = [a for a in arts if a.key in used]
            uploads = {
                u.id: u.owner_id
                for u in s.exec(
                    select(Upload).where(
                        Upload.id.in_(  # type: ignore[attr-defined]
                            [a.source.removeprefix("upload://") for a in arts]
                        )
                    )
                )
            }
        rows = []
        for a in arts:
            row: dict[str, Any] = {
                "source": public_url(a.source),
                "kind": a.kind,
                "resolved_revision": a.resolved_revision,
                "digest": a.digest,
                "size_bytes": a.size_bytes,
                "cache_key": a.cache_key,
                "last_used_at": a.last_used_at.isoformat(),
                "pinned": a.key in pinned,
            }
            if a.source.startswith("upload://"):
                owner = uploads.get(a.source.removeprefix("upload://"))
                if owner is None or user_id is None or owner != user_id:
                    row.update(resolved_revision=None, digest=None, cache_key=None)
            rows.append(row)
        return rows
