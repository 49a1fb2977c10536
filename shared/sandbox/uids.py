"""Per-run uids: a lease file per uid, so two runs never share one.

A tenant's uid is chosen by hashing its id into the configured range and probing forward
to the first uid that is free or already leased to the same tenant. Lease files live in the
policy's ``state_dir/uids`` and are created with ``O_EXCL``, which makes the choice safe
across processes of one machine (trainer replicas, an embedded platform).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from shared.sandbox.errors import SandboxError
from shared.sandbox.policy import SandboxPolicy

__all__ = ["UidLeases"]


class UidLeases:
    """Lease, look up and release uids of the policy's range."""

    def __init__(self, policy: SandboxPolicy) -> None:
        self.policy = policy
        self.root = policy.state_dir / "uids"

    def _holder(self, path: Path) -> str | None:
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            return None

    def lease(self, tenant: str) -> int:
        """The uid of ``tenant`` (a run id), leasing one if it has none."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        size = self.policy.uid_max - self.policy.uid_min + 1
        start = int.from_bytes(hashlib.sha256(tenant.encode()).digest()[:8], "big") % size
        for offset in range(min(size, 4096)):
            uid = self.policy.uid_min + (start + offset) % size
            path = self.root / str(uid)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                if self._holder(path) == tenant:
                    return uid
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(tenant)
            return uid
        raise SandboxError(
            "no free sandbox uid in the configured range"
            f" {self.policy.uid_min}-{self.policy.uid_max}: widen AIDP_SANDBOX_UID_MIN/MAX"
        )

    def release(self, tenant: str) -> None:
        """Give ``tenant``'s uid back (no error if it held none)."""
        if not self.root.is_dir():
            return
        size = self.policy.uid_max - self.policy.uid_min + 1
        start = int.from_bytes(hashlib.sha256(tenant.encode()).digest()[:8], "big") % size
        for offset in range(min(size, 4096)):
            path = self.root / str(self.policy.uid_min + (start + offset) % size)
            holder = self._holder(path)
            if holder is None:
                return
            if holder == tenant:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                return
