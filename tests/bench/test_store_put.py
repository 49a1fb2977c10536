"""``store.put_file`` (encrypt + sha256 + keyed name + one fsync) against a plain write +
fsync of the same bytes, same run, five rounds, min/median/max printed.

Beside it, ``store.put_stream`` over the same file's 1 MiB blocks: the single-threaded
path put_file took before it was pipelined (encrypt, hash and write one 64 KiB chunk at a
time; its blob is now written with O_DIRECT too, :mod:`shared.direct_write`). Target:
put_file >= 0.7 x plain write + fsync (median).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.secrets import InMemoryVault
from shared.store import ArtifactStore

pytestmark = pytest.mark.bench

SIZE = 128 * 1024 * 1024
ROUNDS = 5  # the plain write swings 2x from round to round on these disks


def _timed(fn: Callable[[], object], remove: Callable[[], object]) -> float:
    """Seconds ``fn`` takes to write a new file, once ``remove`` took away the last one.

    Each write starts alike: a new file (no truncation or unlink timed) and nothing dirty
    on the disk (without the sync, a write also paid for the writeback of the one before:
    the plain write swung from 380 to 1,570 MB/s)."""
    remove()
    os.sync()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _summary(values: list[float]) -> str:
    return f"{min(values):.2f}/{statistics.median(values):.2f}/{max(values):.2f}"


def test_store_put_file_against_plain_write(tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    src = tmp_path / "artifact.bin"
    src.write_bytes(data)
    store = ArtifactStore(tmp_path / "store", InMemoryVault())
    digest = store.put_file(src)[0]

    copy = tmp_path / "copy.bin"

    def plain() -> None:
        with open(copy, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    def put() -> None:
        assert store.put_file(src)[0] == digest

    def blocks() -> Iterator[bytes]:
        with open(src, "rb", buffering=0) as fh:
            while block := fh.read(1 << 20):
                yield block

    def put_unpipelined() -> None:
        assert store.put_stream(blocks())[0] == digest

    ratios, before, plain_mbps, put_mbps = [], [], [], []
    for _ in range(ROUNDS):
        t_plain = _timed(plain, lambda: copy.unlink(missing_ok=True))
        t_put = _timed(put, lambda: store.delete(digest))
        t_old = _timed(put_unpipelined, lambda: store.delete(digest))
        ratios.append(t_plain / t_put)
        before.append(t_plain / t_old)
        plain_mbps.append(SIZE / t_plain / 1e6)
        put_mbps.append(SIZE / t_put / 1e6)
    assert b"".join(store.read(digest)) == data
    print(f"\nstore.put_file on {SIZE >> 20} MiB, {ROUNDS} rounds (min/median/max):")
    print(f"  plain write + fsync       {_summary(plain_mbps)} MB/s")
    print(f"  store.put_file            {_summary(put_mbps)} MB/s")
    print(f"  put_file / plain          {_summary(ratios)}")
    print(f"  unpipelined / plain       {_summary(before)}  (the path before pipelining)")
    assert statistics.median(ratios) >= 0.7, ratios
