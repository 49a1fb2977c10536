"""A CPU quota for processes under measurement: a cgroup with a fixed share of a core.

Why: on a 2-core machine the load generator (publisher, 100 WebSocket clients, RabbitMQ,
PostgreSQL) needs most of the CPU, so two uncapped service replicas cannot show how their
capacity adds up — the machine saturates first. Capping each replica at the same share
makes the replicas, not the neighbours, the bottleneck: a replica on a machine of its own,
scaled down. cgroup v1 (``cpu.cfs_quota_us``) or v2 (``cpu.max``); :func:`available`
says whether this host lets us make one (root, a writable cpu controller).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["available", "cpu_capped"]

_ROOT = Path("/sys/fs/cgroup")
_PERIOD_US = 100_000


def _controller() -> tuple[Path, str] | None:
    """(the cpu hierarchy's root folder, "v1" | "v2"), when writable."""
    if os.geteuid() != 0:
        return None
    v1 = _ROOT / "cpu"
    if (v1 / "cpu.cfs_quota_us").exists() and os.access(v1, os.W_OK):
        return v1, "v1"
    for base in (_ROOT / "unified", _ROOT):
        controllers = base / "cgroup.controllers"
        if controllers.exists() and "cpu" in controllers.read_text().split():
            if "cpu" in (base / "cgroup.subtree_control").read_text().split():
                return base, "v2"
    return None


def available() -> bool:
    return _controller() is not None


@contextlib.contextmanager
def cpu_capped(pids: list[int], cores: float) -> Iterator[list[Path]]:
    """Run each of ``pids`` (with its threads) in a cgroup of its own limited to ``cores``
    of CPU; moved back and the cgroups removed on exit."""
    found = _controller()
    if found is None:
        raise RuntimeError("no writable cpu cgroup controller on this host")
    root, version = found
    quota = max(1000, int(cores * _PERIOD_US))
    groups: list[Path] = []
    try:
        for pid in pids:
            group = root / f"aidp-bench-{uuid.uuid4().hex[:8]}"
            group.mkdir()
            groups.append(group)
            if version == "v1":
                (group / "cpu.cfs_period_us").write_text(str(_PERIOD_US))
                (group / "cpu.cfs_quota_us").write_text(str(quota))
            else:
                (group / "cpu.max").write_text(f"{quota} {_PERIOD_US}")
            (group / "cgroup.procs").write_text(str(pid))
        yield groups
    finally:
        for group in groups:
            with contextlib.suppress(OSError):
                for member in (group / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        (root / "cgroup.procs").write_text(member)
            with contextlib.suppress(OSError):
                group.rmdir()
