"""The store on a full disk (issue 19 item 3): a clear DiskFull naming the disk, no partial
blob left in tmp/ or blobs/, and writes work again once space is freed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.secrets import InMemoryVault
from shared.store import ArtifactStore, DiskFull
from tests.support.small_disk import fill, small_disk


def _leftovers(store: ArtifactStore) -> list[Path]:
    return [p for p in store.root.rglob("*") if p.is_file() and p.name != ".naming"]


def test_full_disk_fails_clearly_and_leaves_nothing(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", megabytes=4) as disk:
        store = ArtifactStore(disk / "store", InMemoryVault(), min_free_bytes=256 * 1024)
        big = tmp_path / "big.bin"  # outside the small disk
        big.write_bytes(os.urandom(5 << 20))

        # a size known up front is refused before anything is written
        with pytest.raises(DiskFull) as refused:
            store.put_file(big)
        assert (
            str(disk / "store") in refused.value.message and "MiB needed" in refused.value.message
        )
        assert _leftovers(store) == []

        # a stream runs out of space midway: ENOSPC, the temporary file is removed
        with pytest.raises(DiskFull) as midway:
            store.put_stream(iter([os.urandom(1 << 20) for _ in range(5)]))
        assert "is full" in midway.value.message and midway.value.code == "disk_full"
        assert _leftovers(store) == []

        # room left for a small write, then the next fits again once space is freed
        filler = fill(disk / "filler", leave=64 * 1024)
        with pytest.raises(DiskFull):
            store.put_stream(iter([os.urandom(256 * 1024)]))
        assert _leftovers(store) == []
        filler.unlink()
        digest, size = store.put_stream(iter([b"fits now"]))
        assert size == 8 and b"".join(store.read(digest)) == b"fits now"
