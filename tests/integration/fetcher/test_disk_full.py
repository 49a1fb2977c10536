"""The store's disk full during a fetch (issue 19 item 3): a clear ArtifactsFailed naming
the disk and nothing partial left behind; unpinned entries are evicted to make room; the
next fetch works once space is freed. The store lives on a small tmpfs mounted for the test."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from sqlmodel import select

from services.fetcher.models import Pin
from shared.events import parse_payload
from tests.support.hf_server import HubServer
from tests.support.small_disk import fill, small_disk
from tests.unit.fetcher.harness import running_fetcher, spec

pytestmark = pytest.mark.integration

OWNER = "6d1f7a6e-0000-4000-8000-00000000d0a1"
MiB = 1 << 20


def _blobs(store_dir: Path) -> list[Path]:
    return [p for p in (store_dir / "blobs").rglob("*") if p.is_file()]


def _tmp(store_dir: Path) -> list[Path]:
    return list((store_dir / "tmp").iterdir())


async def _unpinned(fetcher: object, run_id: object) -> None:
    for _ in range(200):
        with fetcher.cache.db.session() as s:  # type: ignore[attr-defined]
            if not s.exec(select(Pin).where(Pin.run_id == run_id)).all():
                return
        await asyncio.sleep(0.05)
    raise TimeoutError("the cancelled run's artifacts stayed pinned")


async def test_fetch_on_a_full_disk_fails_clearly_then_evicts_and_recovers(tmp_path: Path) -> None:
    with HubServer(lfs_threshold=1024) as hub, small_disk(tmp_path / "disk", megabytes=8) as disk:
        hub.commit("org/huge", {"a.bin": os.urandom(5 * MiB), "b.bin": os.urandom(5 * MiB)})
        hub.commit("org/a", {f"{i}.bin": os.urandom(MiB) for i in range(3)})
        hub.commit("org/b", {f"{i}.bin": os.urandom(2 * MiB) for i in range(3)})
        store_dir = disk / "store"
        async with running_fetcher(
            tmp_path, hf_endpoint=hub.url, store_dir=store_dir, store_min_free_mb=0.25
        ) as f:
            # more than the disk holds: refused before any byte is downloaded
            failed = await f.fetch(spec("hf://org/huge@main"), owner=OWNER)
            assert failed.type == "ArtifactsFailed"
            reason = parse_payload(failed).reason  # type: ignore[attr-defined]
            assert f"The disk holding {store_dir} is full" in reason and "needed" in reason
            assert hub.downloads() == 0 and _blobs(store_dir) == [] and _tmp(store_dir) == []

            # the disk filled by something else: a clear failure, nothing partial
            filler = fill(disk / "filler", leave=512 * 1024)
            failed = await f.fetch(spec("hf://org/a@main"), owner=OWNER)
            assert failed.type == "ArtifactsFailed"
            assert "is full" in parse_payload(failed).reason  # type: ignore[attr-defined]
            assert _blobs(store_dir) == [] and _tmp(store_dir) == []

            # space freed: the next run works
            filler.unlink()
            run_a = await f.start_run(spec("hf://org/a@main"), owner=OWNER)
            assert (await f.outcome(run_a)).type == "ArtifactsCached"
            kept = set(_blobs(store_dir))
            assert len(kept) == 4  # three files and the manifest

            # org/b does not fit beside org/a: the unpinned org/a is evicted to make room
            await f.cancel(run_a)
            await _unpinned(f, run_a)
            cached = await f.fetch(spec("hf://org/b@main"), owner=OWNER)
            assert cached.type == "ArtifactsCached", parse_payload(cached)
            assert not kept & set(_blobs(store_dir))  # org/a's blobs are gone
            assert _tmp(store_dir) == []
