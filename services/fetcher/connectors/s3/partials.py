"""Partial files of S3 downloads under ``<work dir>/s3-partial``: opened under an
exclusive lock while written, and swept once nobody touched them for a week."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["locked", "sweep_partials"]

_STALE_PARTIAL_SECONDS = 7 * 24 * 3600


@contextmanager
def locked(path: Path) -> Iterator[IO[bytes]]:
    """``path`` opened for appending under an exclusive flock; reopened if another holder
    moved it away meanwhile (so the lock is always on the file at ``path``)."""
    while True:
        fh = path.open("ab+")
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            same = os.fstat(fh.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        fh.close()
    try:
        yield fh
    finally:
        fh.close()


def sweep_partials(partial_dir: Path) -> None:
    """Delete partial files nobody touched for a week (abandoned sources)."""
    cutoff = time.time() - _STALE_PARTIAL_SECONDS
    for path in partial_dir.glob("*.part"):
        try:
            if path.stat().st_mtime < cutoff:
                with path.open("ab") as fh:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    path.unlink(missing_ok=True)
        except OSError:
            continue  # being written, or gone
