"""A memory limit per sandbox, through a cgroup where the host lets us make one.

cgroup v2 (``memory.max``) or v1 (``memory.limit_in_bytes``), created as a child of this
process's own memory cgroup. Hosts without a writable memory controller (many containers)
get no memory limit; :func:`memory_cgroup` then returns None and says why in the log.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

__all__ = ["memory_cgroup", "oom_killed", "remove_cgroup"]

log = logging.getLogger(__name__)
_ROOT = Path("/sys/fs/cgroup")


def _own_memory_cgroup() -> tuple[Path, str] | None:
    """(folder of this process's memory cgroup, "v1" | "v2")."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(",") and (_ROOT / "memory").is_dir():
            return _ROOT / "memory" / path.lstrip("/"), "v1"
    for line in lines:
        if line.startswith("0::"):
            base = _ROOT / "unified" if (_ROOT / "unified").is_dir() else _ROOT
            available = base / "cgroup.controllers"
            if available.exists() and "memory" in available.read_text().split():
                return base / line[3:].lstrip("/"), "v2"
    return None


def memory_cgroup(name: str, limit_mb: int) -> Path | None:
    """A cgroup limited to ``limit_mb`` whose ``cgroup.procs`` a sandbox joins, or None."""
    own = _own_memory_cgroup()
    if own is None:
        log.warning("no memory cgroup on this host: sandboxes run without a memory limit")
        return None
    parent, version = own
    path = parent / name
    limit = str(limit_mb * 1024 * 1024)
    try:
        path.mkdir(exist_ok=True)
        if version == "v1":
            (path / "memory.limit_in_bytes").write_text(limit)
            with contextlib.suppress(OSError):  # swap accounting is often off
                (path / "memory.memsw.limit_in_bytes").write_text(limit)
        else:
            (path / "memory.max").write_text(limit)
            with contextlib.suppress(OSError):
                (path / "memory.swap.max").write_text("0")
    except OSError as exc:
        log.warning("cannot create a memory cgroup (%s): sandboxes run without a memory limit", exc)
        with contextlib.suppress(OSError):
            path.rmdir()
        return None
    return path


def oom_killed(path: Path | None) -> bool:
    """Did the kernel kill a process of this cgroup for memory?"""
    if path is None:
        return False
    for name in ("memory.events", "memory.oom_control"):
        with contextlib.suppress(OSError):
            for line in (path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value or 0) > 0:
                    return True
    return False


def remove_cgroup(path: Path | None) -> None:
    """Remove an (empty) cgroup; no error if it is gone or still busy."""
    if path is not None:
        with contextlib.suppress(OSError):
            os.rmdir(path)
