"""Holds on store blobs that a service other than their writer references.

The store is shared by the fetcher and the trainer, each of which keeps its own record of
the blobs it references. A registered LoRA version lists the cached base model's blobs
under ``base/`` without copying them (:mod:`services.trainer.adapters`); the fetcher, which
only knows its own artifacts, would delete those blobs when it evicts the base model. A
hold says "do not delete this blob, ``holder`` needs it": a writer that deletes blobs for
its own bookkeeping (cache eviction) skips held ones.

Layout: ``<root>/<digest>/<holder>`` — empty marker files, so adding and checking a hold is
one file operation, safe between processes, and needs no database shared by services.
Holders are opaque names (``[A-Za-z0-9._:-]``, at most 128 characters), e.g. the manifest
key of the model version that references the blob.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["BlobHolds"]

_HOLDER = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class BlobHolds:
    """Marker files under ``root`` naming who holds which blob."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def hold(self, digests: Iterable[str], holder: str) -> None:
        """Record that ``holder`` needs every blob of ``digests`` (idempotent)."""
        _check_holder(holder)
        for digest in digests:
            folder = self.root / _check_digest(digest)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / holder).touch()

    def release(self, digests: Iterable[str], holder: str) -> None:
        """Drop ``holder``'s holds on ``digests`` (missing holds are ignored)."""
        _check_holder(holder)
        for digest in digests:
            folder = self.root / _check_digest(digest)
            (folder / holder).unlink(missing_ok=True)
            try:
                folder.rmdir()  # only when no other holder is left
            except OSError:
                pass

    def holders(self, digest: str) -> list[str]:
        """Who holds ``digest`` (sorted; empty when nobody does)."""
        try:
            return sorted(os.listdir(self.root / _check_digest(digest)))
        except FileNotFoundError:
            return []

    def is_held(self, digest: str) -> bool:
        return bool(self.holders(digest))


def _check_holder(holder: str) -> str:
    if not _HOLDER.match(holder):
        raise ValueError(f"invalid holder name {holder!r}")
    return holder


def _check_digest(digest: str) -> str:
    if not _DIGEST.match(digest):
        raise ValueError(f"invalid blob digest {digest!r}")
    return digest
