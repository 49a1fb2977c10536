"""A small filesystem for disk-full tests: a size-limited tmpfs mounted for the test.

Mounting needs root (CI runs as root); elsewhere the tests that use it fail with the
reason. The mount is removed when the context exits, whatever was written there.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["fill", "small_disk"]


@contextmanager
def small_disk(where: Path, *, megabytes: int) -> Iterator[Path]:
    """Mount a ``megabytes`` MiB tmpfs at ``where`` (created) for the duration."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        raise RuntimeError("mounting a small tmpfs needs root (CI runs as root)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(path: Path, *, leave: int) -> Path:
    """Write a file at ``path`` that leaves about ``leave`` bytes free on its disk."""
    import shutil

    free = shutil.disk_usage(path.parent).free
    with path.open("wb") as out:
        out.write(b"\0" * max(free - leave, 0))
    return path
