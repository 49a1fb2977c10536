"""``shared.sandbox.uids.UidLeases``: one uid per tenant and one tenant per uid, across
releases in the middle of a probe chain and across processes leasing at once."""

from __future__ import annotations

import hashlib
import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from shared.sandbox import SandboxError, SandboxPolicy, UidLeases


def _policy(tmp_path: Path, size: int = 1000) -> SandboxPolicy:
    return SandboxPolicy(state_dir=tmp_path / "state", uid_min=50_000, uid_max=50_000 + size - 1)


def _colliding(policy: SandboxPolicy, count: int) -> list[str]:
    """``count`` tenant names whose probes start at the same uid."""
    size = policy.uid_max - policy.uid_min + 1

    def start(name: str) -> int:
        return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % size

    names: list[str] = []
    i = 0
    target = start("t0")
    while len(names) < count:
        if start(f"t{i}") == target:
            names.append(f"t{i}")
        i += 1
    return names


def test_a_tenant_keeps_its_uid_and_tenants_never_share_one(tmp_path: Path) -> None:
    leases = UidLeases(_policy(tmp_path))
    uids = {name: leases.lease(name) for name in (f"run-{i}" for i in range(50))}
    assert len(set(uids.values())) == 50
    assert all(leases.lease(name) == uid for name, uid in uids.items())
    assert all(50_000 <= uid < 51_000 for uid in uids.values())


def test_a_release_in_the_middle_of_a_chain_does_not_hide_a_later_lease(
    tmp_path: Path,
) -> None:
    """Three tenants probing from the same uid: the first one's release must not make the
    third one's next lease a second uid (it still holds its own, further along)."""
    policy = _policy(tmp_path, size=100)
    first, second, third = _colliding(policy, 3)
    leases = UidLeases(policy)
    uids = [leases.lease(first), leases.lease(second), leases.lease(third)]
    assert len(set(uids)) == 3
    leases.release(first)
    assert leases.lease(third) == uids[2]
    assert leases.lease(second) == uids[1]
    leases.release(third)  # found past the released uid, and released
    newcomer = leases.lease(first)  # the released uids are leased again, first one first
    assert newcomer == uids[0]
    assert leases.lease(third) == uids[2]


def test_a_full_range_is_a_clear_error(tmp_path: Path) -> None:
    leases = UidLeases(_policy(tmp_path, size=3))
    for name in ("a", "b", "c"):
        leases.lease(name)
    with pytest.raises(SandboxError, match="no free sandbox uid"):
        leases.lease("d")
    leases.release("b")
    assert 50_000 <= leases.lease("d") <= 50_002


def _lease_many(state_dir: str, names: list[str], queue: Any) -> None:
    leases = UidLeases(SandboxPolicy(state_dir=Path(state_dir), uid_min=50_000, uid_max=50_099))
    queue.put({name: leases.lease(name) for name in names})


def test_processes_leasing_at_once_agree(tmp_path: Path) -> None:
    """Four processes lease the same 30 colliding-prone tenants at once (a range of 100):
    each tenant gets one uid, whichever process asked, and no uid has two tenants."""
    names = [f"run-{i}" for i in range(30)]
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_lease_many, args=(str(tmp_path / "state"), names, queue))
        for _ in range(4)
    ]
    for proc in procs:
        proc.start()
    answers = [queue.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(30)
    assert all(answer == answers[0] for answer in answers)
    assert len(set(answers[0].values())) == len(names)
