"""What the operator configured for sandboxes, and the host check that refuses to go on
without them."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from shared.sandbox.errors import SandboxError

__all__ = ["SandboxPolicy", "check_host"]


@dataclass(frozen=True)
class SandboxPolicy:
    """Limits and identities every sandbox of this machine gets.

    ``state_dir`` (0700, the platform's) keeps the uid leases and the generated
    ``/etc/passwd`` files; it is never mounted into a sandbox.
    """

    state_dir: Path
    uid_min: int = 3_000_000
    uid_max: int = 3_999_999
    max_open_files: int = 65_536
    max_processes: int = 4_096
    memory_mb: int | None = None  # None: no memory limit (or the host allows none)
    bwrap: str = "bwrap"
    setpriv: str = "setpriv"
    prlimit: str = "prlimit"

    def __post_init__(self) -> None:
        if not 1000 <= self.uid_min <= self.uid_max < 2**32 - 1:
            raise ValueError("sandbox uid range must lie within [1000, 2^32-2] and be ordered")


def _which(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/bin/{name}", f"/bin/{name}") if os.access(p, os.X_OK)), None
    )


def check_host(policy: SandboxPolicy) -> dict[str, str]:
    """The absolute paths of bwrap, setpriv, prlimit, nsenter and ip; :class:`SandboxError` when the
    host cannot give each run its own uid (not root, a tool missing)."""
    if os.geteuid() != 0:
        raise SandboxError(
            "the run sandbox needs aidp to start as root: each run gets its own unprivileged"
            " uid, and only root can switch to it (start `aidp up` with sudo, or run the"
            " trainer as root); runs are never started unsandboxed"
        )
    found = {}
    for tool, package in (
        (policy.bwrap, "bubblewrap"),
        (policy.setpriv, "util-linux"),
        (policy.prlimit, "util-linux"),
        ("nsenter", "util-linux"),
        ("ip", "iproute2"),
    ):
        path = tool if os.path.isabs(tool) and os.access(tool, os.X_OK) else _which(tool)
        if path is None:
            raise SandboxError(
                f"the run sandbox needs `{tool}` (Debian package {package}: apt-get install"
                f" {package}; `make install` does it); runs are never started unsandboxed"
            )
        found[os.path.basename(tool)] = path
    return found
