"""Per-user storage quota (issue 13): ``AIDP_USER_STORAGE_QUOTA_BYTES``.

The fetcher owns uploads and the cache, and knows the requesting user of each (the
``X-Aidp-User`` of an upload, the owner of each fetch job), so the accounting lives here.

A user's usage is

- the bytes of their uploads (each distinct blob once), plus
- the bytes of the cached artifacts their runs pin (``fetcher_pins`` of runs whose fetch
  job belongs to them; each artifact once; their own uploads are not counted twice).

Refused, with the quota and the setting named:

- an upload that would take the usage past the quota: 413 ``quota_exceeded`` before the
  body is read when its length is declared, else as soon as the running count passes it
  (the partial blob is removed, nothing is recorded);
- a download that would: the run's fetch fails (``ArtifactsFailed``, not retryable).

A cache hit stores no new bytes and is never refused (it still counts while pinned).
0 = unlimited.
"""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import select

from services.fetcher.errors import FetchFailed
from services.fetcher.models import Artifact, FetchJob, Pin, Upload
from shared.db import Database
from shared.errors import ClientError

__all__ = ["QuotaExceeded", "StorageQuota"]

SETTING = "AIDP_USER_STORAGE_QUOTA_BYTES"


class QuotaExceeded(ClientError):
    """413: this upload would take its owner past their storage quota."""

    code = "quota_exceeded"
    status = 413


def _gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB"


class StorageQuota:
    """Usage and checks of the per-user quota (see module docstring)."""

    def __init__(self, db: Database, limit_bytes: int) -> None:
        self.db = db
        self.limit = limit_bytes

    @property
    def unlimited(self) -> bool:
        return self.limit <= 0

    def usage(self, user_id: str) -> int:
        """Bytes counted against ``user_id``: their uploads plus what their runs pin."""
        with self.db.session() as s:
            uploads = dict(
                s.execute(
                    select(Upload.digest, func.max(Upload.size_bytes))
                    .where(Upload.owner_id == user_id)
                    .group_by(Upload.digest)  # type: ignore[arg-type]
                ).all()
            )
            pinned = s.execute(
                select(Artifact.key, Artifact.size_bytes)
                .where(
                    Artifact.key.in_(  # type: ignore[attr-defined]
                        select(Pin.artifact_key)
                        .join(FetchJob, FetchJob.run_id == Pin.run_id)  # type: ignore[arg-type]
                        .where(FetchJob.owner_id == user_id)
                    ),
                    ~Artifact.source.startswith("upload://"),  # type: ignore[attr-defined,arg-type]
                )
                .distinct()
            ).all()
        return sum(int(n) for n in uploads.values()) + sum(int(n) for _, n in pinned)

    def _message(self, what: str, needed: int, used: int) -> str:
        return (
            f"Storage quota exceeded: {what} needs {_gib(needed)} but you already use "
            f"{_gib(used)} of your {_gib(self.limit)} quota ({self.limit} bytes, "
            f"{SETTING}): your uploads plus the artifacts your active runs use. Delete "
            "uploads, wait for your runs to finish, or ask an operator to raise the quota."
        )

    def check_upload(self, user_id: str, incoming: int) -> None:
        """Raise :class:`QuotaExceeded` (413) when ``incoming`` more bytes do not fit."""
        if self.unlimited:
            return
        used = self.usage(user_id)
        if used + incoming > self.limit:
            raise self.upload_refused(incoming, used=used)

    def upload_refused(self, incoming: int, *, used: int) -> QuotaExceeded:
        """The 413 of an upload of ``incoming`` bytes (so far) when ``used`` were held."""
        return QuotaExceeded(self._message("this upload", incoming, used))

    def check_fetch(self, user_id: str | None, needed: int, *, source: str) -> None:
        """Raise FetchFailed (not retryable) when a download of ``needed`` bytes does not
        fit. ``user_id`` None (a job without an owner) is not limited."""
        if self.unlimited or user_id is None:
            return
        used = self.usage(user_id)
        if used + needed > self.limit:
            raise FetchFailed(self._message(source, needed, used), retryable=False)

    def check_stored(self, user_id: str | None, size: int, *, source: str) -> None:
        """After a download of ``size`` bytes was stored and pinned (so counted): raise
        FetchFailed when it took ``user_id`` past the quota."""
        if self.unlimited or user_id is None:
            return
        used = self.usage(user_id)
        if used > self.limit:
            raise FetchFailed(self._message(source, size, used - size), retryable=False)
