"""Fetching one source into the cache: resolve → cache hit, or single-flight download.

:meth:`Fetcher.fetch` is synchronous (provider clients are) and runs in a worker thread.
Plaintext exists only in a per-download scratch directory under the work dir (outside the
store), and each file is deleted as soon as it is encrypted into the store. Each scratch
directory holds an exclusive ``flock`` for as long as its download runs (``scratch.py``), so
:meth:`Fetcher.sweep_scratch` (run at start) can delete what a killed process left behind
without touching the live downloads of another process sharing the work dir.
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from services.fetcher.cache import ArtifactCache
from services.fetcher.connectors import Connector, Credentials, RemoteFile
from services.fetcher.errors import FetchCancelled, FetchFailed
from services.fetcher.models import Artifact, Resolution, Upload
from services.fetcher.progress import ProgressSink, Throttle
from services.fetcher.scratch import scratch_dir, sweep_scratch
from shared.events import ArtifactRef
from shared.spec import Source
from shared.store import DiskFull, Manifest, ManifestFile

__all__ = ["Fetcher", "ProgressSink", "StaleNotice", "source_name"]

#: Told (source, last resolution, why the provider failed) when a floating ref is served
#: from its last resolution because the provider could not be reached.
StaleNotice = Callable[[Source, Resolution, str], None]

#: Authorises the requester for a credentialed cache entry (raises FetchFailed if not).
_Check = Callable[[Artifact], None]

_POLL = 0.2


def source_name(source: Source) -> str:
    """The source URI without its revision (the cache's name for it)."""
    if source.scheme == "hf":
        return f"hf://{'datasets/' if source.kind == 'dataset' else ''}{source.id}"
    if source.scheme in ("kaggle", "upload"):
        return f"{source.scheme}://{source.id}"
    return source.id


class Fetcher:
    """Resolves sources and makes sure they are cached (see module docstring)."""

    def __init__(
        self,
        *,
        cache: ArtifactCache,
        connectors: dict[str, Connector],
        work_dir: Path,
        progress_interval: float = 0.5,
    ) -> None:
        self.cache = cache
        self.connectors = connectors
        self.work_dir = work_dir
        self.progress_interval = progress_interval

    def sweep_scratch(self) -> int:
        """Delete scratch directories no live process holds (left by a killed download)."""
        return sweep_scratch(self.work_dir)

    def fetch(
        self,
        source: Source,
        *,
        run_id: uuid.UUID,
        owner_id: str | None,
        creds: Credentials,
        progress: ProgressSink,
        cancelled: threading.Event | None = None,
        offline_ok: bool = True,
        notice: StaleNotice | None = None,
    ) -> ArtifactRef:
        """Return a cached artifact for ``source`` (pinned by ``run_id``), downloading it once.

        With ``offline_ok``, a floating ref whose provider cannot be reached (a retryable
        failure) is served at its last recorded resolution when that is still cached, and
        ``notice`` is told; the requester's access to a credentialed entry is still checked.
        """
        cancelled = cancelled or threading.Event()
        if source.scheme == "upload":
            return self._upload(source, run_id=run_id, owner_id=owner_id)
        connector = self.connectors[source.scheme]
        name = source_name(source)
        # A cache entry fetched with someone's credentials is served only once the provider
        # accepted the requester's own for it (a pinned revision skips the resolve, and the
        # Hub answers a gated repo's info to anyone, so the resolve alone proves nothing).
        check = functools.partial(self._authorise_hit, connector, source, creds=creds)
        revision = connector.pinned_revision(source)
        if revision is None:
            ref_key = f"{name}@{source.revision or ''}"
            try:
                revision = connector.resolve(source, creds)  # the one cheap lookup
            except FetchFailed as exc:
                stale = self._last_known(exc, ref_key, source, run_id, check, offline_ok)
                if stale is None:
                    raise
                if notice is not None:
                    notice(source, stale[1], exc.message)
                return stale[0]
            if revision:
                self.cache.remember_resolution(ref_key, revision)
        if revision:
            hit = self._hit(f"{name}@{revision}", source, run_id, check)
            if hit is not None:
                return hit
        lease_key = f"{name}@{revision}" if revision else name
        while not self.cache.acquire(lease_key):
            if cancelled.is_set():
                raise FetchCancelled()
            time.sleep(_POLL)
            if revision:
                hit = self._hit(lease_key, source, run_id, check)
                if hit is not None:
                    return hit
        try:
            if revision:  # a concurrent holder may have finished between our check and lease
                hit = self._hit(lease_key, source, run_id, check)
                if hit is not None:
                    return hit
            return self._download(
                source,
                connector,
                name=name,
                revision=revision,
                run_id=run_id,
                creds=creds,
                progress=progress,
                cancelled=cancelled,
                lease_key=lease_key,
                owner_id=owner_id,
            )
        finally:
            self.cache.release(lease_key)

    # -- internals -----------------------------------------------------------------------

    def _make_disk_room(
        self, missing: list[RemoteFile], *, keep: set[str], requester: str | None
    ) -> None:
        """Before a download: room on the store's disk for every missing file (evicting
        unpinned entries if need be), and in the scratch directory for the largest one (its
        plaintext lives there until it is encrypted). A clear failure, not a partial blob."""
        sizes = [f.size or 0 for f in missing]
        largest = max(sizes, default=0)
        shared_disk = os.stat(self.work_dir).st_dev == os.stat(self.cache.store.root).st_dev
        try:
            self.cache.make_disk_room(
                sum(sizes) + (largest if shared_disk else 0), keep=keep, requester=requester
            )
            DiskFull.check(self.work_dir, largest)
        except DiskFull as exc:
            raise FetchFailed(exc.message) from None

    def _last_known(
        self,
        failure: FetchFailed,
        ref_key: str,
        source: Source,
        run_id: uuid.UUID,
        check: _Check,
        offline_ok: bool,
    ) -> tuple[ArtifactRef, Resolution] | None:
        """The cached artifact of the ref's last resolution, when the resolve failed only
        because the provider was unreachable and the spec allows it; else None."""
        if not (failure.retryable and offline_ok):
            return None
        resolution = self.cache.last_resolution(ref_key)
        if resolution is None:
            return None
        name = ref_key.rsplit("@", 1)[0]
        # the access check of a credentialed entry needs the provider too: it raises then
        hit = self._hit(f"{name}@{resolution.revision}", source, run_id, check)
        return None if hit is None else (hit, resolution)

    def _hit(
        self, key: str, source: Source, run_id: uuid.UUID, check: _Check | None = None
    ) -> ArtifactRef | None:
        art = self.cache.find_complete(key)
        if art is None:
            return None
        if art.credentialed and check is not None:
            check(art)
        self.cache.pin(run_id, key)
        self.cache.touch(key)
        return ArtifactRef(
            kind=source.kind,
            source=art.source,
            resolved_revision=art.resolved_revision,
            digest=art.digest,
            size_bytes=art.size_bytes,
            cache_key=art.cache_key,
        )

    def _authorise_hit(
        self, connector: Connector, source: Source, art: Artifact, creds: Credentials
    ) -> None:
        """A hit of an entry fetched with someone's credentials: the requester's own must
        reach it at its revision; else a permission failure."""
        if self._check_access(connector, source, art.resolved_revision, creds):
            self.cache.mark_public(art.key)  # neither private nor gated: share without checks

    @staticmethod
    def _check_access(
        connector: Connector, source: Source, revision: str, creds: Credentials
    ) -> bool:
        """``connector.authorize`` with a permission message; True when the source is public."""
        try:
            return connector.authorize(source, revision, creds)
        except FetchFailed as exc:
            if exc.retryable:  # the provider could not be reached: try again later
                raise
            raise FetchFailed(
                f"Permission denied: your credentials cannot read {source.uri} at revision "
                f"{revision}, so its cached copy is not served to you. {exc.message}",
                retryable=False,
            ) from None

    def _download(
        self,
        source: Source,
        connector: Connector,
        *,
        name: str,
        revision: str,
        run_id: uuid.UUID,
        creds: Credentials,
        progress: ProgressSink,
        cancelled: threading.Event,
        lease_key: str,
        owner_id: str | None,
    ) -> ArtifactRef:
        remote = connector.list_files(source, revision, creds)
        # the whole artifact counts against the requester's quota once pinned (reused
        # blobs too); an unknown size is checked again once it is stored
        self.cache.quota.check_fetch(
            owner_id, sum(item.size or 0 for item in remote), source=source.uri
        )
        files: list[ManifestFile] = []
        missing: list[RemoteFile] = []
        for item in remote:
            known = self.cache.digest_for(item.aliases)
            if known is not None and item.size is not None:
                files.append(ManifestFile(item.path, known, item.size))
            else:
                missing.append(item)
        if files:
            # content stored before (maybe from someone's credentialed fetch) is reused only
            # for a requester the provider lets read this revision: a listing is not enough
            # (the Hub lists a gated repo's files to anyone)
            self._check_access(connector, source, revision, creds)
        if not remote or missing:
            expected = sum(f.size or 0 for f in missing)
            self.cache.make_room(expected, keep={lease_key}, requester=owner_id)
            self._make_disk_room(missing, keep={lease_key}, requester=owner_id)
        total = sum(f.size or 0 for f in missing) or None
        throttle = Throttle(
            source,
            total,
            progress,
            self.progress_interval,
            cancelled,
            lambda: self.cache.renew(lease_key),
        )
        if not remote or missing:
            files += self._store_missing(
                source, connector, revision, creds, missing, throttle, cancelled
            )
        throttle.final()
        files.sort(key=lambda f: f.path)
        # a source that names no revision before its download (https, a database query):
        # the connector derives it from the stored content; such an artifact is one file
        content_revision = connector.content_revision(source, files) if files else None
        if content_revision is not None:
            revision = content_revision
        manifest_key = self.cache.store.put_manifest(
            Manifest(source=name, revision=revision, files=files)
        )
        single = content_revision is not None
        key = f"{name}@{revision}"
        art = self.cache.record(
            key=key,
            source=name,
            kind=source.kind,
            revision=revision,
            manifest_key=manifest_key,
            digest=files[0].digest if single else manifest_key,
            files=files,
            credentialed=connector.credentialed(creds),
            owner_id=owner_id,
        )
        self.cache.pin(run_id, key)
        try:
            self.cache.make_room(0, keep={key}, requester=owner_id)
            # over the quota only now when the provider did not announce sizes
            self.cache.quota.check_stored(owner_id, art.size_bytes, source=source.uri)
        except FetchFailed:
            self.cache.unpin(run_id)
            self.cache.evict(key)
            raise
        return ArtifactRef(
            kind=source.kind,
            source=name,
            resolved_revision=revision,
            digest=art.digest,
            size_bytes=art.size_bytes,
            cache_key=manifest_key,
        )

    def _store_missing(
        self,
        source: Source,
        connector: Connector,
        revision: str,
        creds: Credentials,
        missing: list[RemoteFile],
        throttle: Throttle,
        cancelled: threading.Event,
    ) -> list[ManifestFile]:
        """Download ``missing`` into a scratch directory, each file encrypted into the store
        (and its plaintext deleted) as it arrives; the stored files. A full disk is a
        FetchFailed with a readable message."""
        aliases = {f.path: f.aliases for f in missing}
        stored: list[ManifestFile] = []
        with scratch_dir(self.work_dir) as scratch:
            try:
                for path, local in connector.download(
                    source, revision, creds, missing, scratch, throttle
                ):
                    digest, size = self.cache.store.put_file(local)
                    local.unlink(missing_ok=True)  # plaintext lives no longer than needed
                    self.cache.add_aliases(aliases.get(path, ()), digest)
                    stored.append(ManifestFile(path, digest, size))
                    if cancelled.is_set():
                        raise FetchCancelled()
            except DiskFull as exc:
                raise FetchFailed(f"Fetching {source.uri} stopped: {exc.message}") from None
            except OSError as exc:
                if not DiskFull.is_enospc(exc):
                    raise
                free = shutil.disk_usage(scratch).free
                full = DiskFull(self.work_dir, free=free)
                raise FetchFailed(f"Fetching {source.uri} stopped: {full.message}") from None
        return stored

    def _upload(self, source: Source, *, run_id: uuid.UUID, owner_id: str | None) -> ArtifactRef:
        with self.cache.db.session() as s:
            upload = s.get(Upload, source.id)
        if upload is None or owner_id is None or upload.owner_id != owner_id:
            raise FetchFailed(
                f"{source.uri} was not found: an upload can only be used by the "
                "user who uploaded it. Upload the file again with `aidp` or the UI."
            )
        hit = self._hit(f"{source_name(source)}@{upload.digest}", source, run_id)
        if hit is None:
            raise FetchFailed(f"{source.uri} is no longer in the cache; upload it again.")
        return hit
