"""Leftover processes of a test: model servers and training processes that the services
start in sessions of their own (so that they outlive a service restart, as deployments
must), which therefore outlive the test's services too unless the test removes them."""

from __future__ import annotations

import os
import signal
from pathlib import Path

__all__ = ["kill_processes_under"]


def _ancestors() -> set[int]:
    """This process and its parents (their command lines may name the directory too)."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return pids


def kill_processes_under(root: Path) -> int:
    """SIGKILL every process whose command line names a path under ``root``; returns how
    many. Linux only (reads /proc); elsewhere it does nothing."""
    proc = Path("/proc")
    if not proc.is_dir():
        return 0
    needle = str(root).encode()
    spared = _ancestors()
    killed = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) in spared:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
    return killed
