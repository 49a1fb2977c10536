"""Per-run uids: a lease file per uid, so two runs never share one.

A tenant's uid is chosen by hashing its id into the configured range and probing forward
to the first uid that is free or already leased to the same tenant. Lease files live in the
policy's ``state_dir/uids``; every lease and release holds an exclusive ``flock`` on
``state_dir/uids/.lock``, which makes the choice safe across processes of one machine
(trainer replicas, an embedded platform).

A released uid keeps its file, emptied (a tombstone), rather than losing it: the probe for
a tenant leased further along the same chain must walk past it. Were the file removed, a
later probe would stop there, miss the tenant's lease and hand it a second uid; the probe
stops only at a uid never leased. A tombstone is leased again before a never-used uid.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager

from shared.sandbox.errors import SandboxError
from shared.sandbox.policy import SandboxPolicy

__all__ = ["UidLeases"]

_PROBES = 4096  # uids tried from a tenant's hash at most


class UidLeases:
    """Lease, look up and release uids of the policy's range."""

    def __init__(self, policy: SandboxPolicy) -> None:
        self.policy = policy
        self.root = policy.state_dir / "uids"

    def lease(self, tenant: str) -> int:
        """The uid of ``tenant`` (a run id), leasing one if it has none."""
        if not tenant:
            raise SandboxError("a sandbox tenant needs a name")
        with self._locked():
            free: int | None = None
            for uid, holder in self._chain(tenant):
                if holder == tenant:
                    return uid
                if holder == "" and free is None:
                    free = uid  # released: leased again before a never-used uid
                if holder is None:
                    free = uid if free is None else free
                    break
            if free is None:
                raise SandboxError(
                    "no free sandbox uid in the configured range"
                    f" {self.policy.uid_min}-{self.policy.uid_max}:"
                    " widen AIDP_SANDBOX_UID_MIN/MAX"
                )
            self._write(free, tenant)
            return free

    def release(self, tenant: str) -> None:
        """Give ``tenant``'s uid back (no error if it held none)."""
        if not self.root.is_dir():
            return
        with self._locked():
            for uid, holder in self._chain(tenant):
                if holder == tenant:
                    self._write(uid, "")  # a tombstone: probes go on past it
                    return
                if holder is None:
                    return

    def _chain(self, tenant: str) -> Iterator[tuple[int, str | None]]:
        """The uids a probe for ``tenant`` visits, in order, with their holders: the tenant's
        name, ``""`` for a released uid, None for a uid never leased."""
        size = self.policy.uid_max - self.policy.uid_min + 1
        start = int.from_bytes(hashlib.sha256(tenant.encode()).digest()[:8], "big") % size
        for offset in range(min(size, _PROBES)):
            uid = self.policy.uid_min + (start + offset) % size
            try:
                holder = (self.root / str(uid)).read_text().strip()
            except FileNotFoundError:
                holder = None
            yield uid, holder

    def _write(self, uid: int, holder: str) -> None:
        fd = os.open(self.root / str(uid), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(holder)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the lock
