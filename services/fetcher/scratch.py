"""Per-download scratch directories under the work dir, and the sweep of the ones a killed
process left behind.

Plaintext exists only in a scratch directory (outside the store). Each one holds an
exclusive ``flock`` on its lock file for as long as its download runs (the kernel releases
it when the process dies), so :func:`sweep_scratch` deletes only what no live process
holds, even when another process shares the work dir.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["SCRATCH_PREFIX", "scratch_dir", "sweep_scratch"]

log = logging.getLogger(__name__)

SCRATCH_PREFIX = "fetch-"
_LOCK = ".aidp-lock"


@contextmanager
def scratch_dir(work_dir: Path) -> Iterator[Path]:
    """A fresh scratch directory under ``work_dir``, locked while in use, then deleted."""
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=work_dir))
    held = (scratch / _LOCK).open("a")
    fcntl.flock(held, fcntl.LOCK_EX)  # released by the kernel if this process dies
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        held.close()


def sweep_scratch(work_dir: Path) -> int:
    """Delete scratch directories no live process holds (left by a killed download)."""
    removed = 0
    for path in work_dir.glob(f"{SCRATCH_PREFIX}*"):
        try:  # no lock file: being created right now (or not ours) -> left alone
            with (path / _LOCK).open("r") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        except BlockingIOError:
            continue  # a live download in another process
        except OSError:
            continue  # no lock file, vanished meanwhile, or not ours to delete
    if removed:
        log.info("removed %d scratch directories of interrupted downloads", removed)
    return removed
