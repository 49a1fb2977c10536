"""Per-user storage quota and per-owner cache eviction (issue 13).

Two users, a local Hub, a small quota or cache budget: an upload past the quota answers
413 and leaves nothing; a download past it fails the run's fetch; eviction takes the
requester's own unpinned entries first and never another user's pinned ones.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from services.fetcher.models import Artifact, Upload
from shared.events import parse_payload
from tests.support.hf_server import HubServer
from tests.unit.fetcher.harness import Fetcher, running_fetcher, spec

ALICE = "6d1f7a6e-0000-4000-8000-0000000000a1"
BOB = "6d1f7a6e-0000-4000-8000-0000000000b2"
KB, MB = 1024, 1 << 20


def _blobs(f: Fetcher) -> set[Path]:
    """Blob files of the store (not the store's own bookkeeping files)."""
    return {p for p in f.store_dir.rglob("*") if p.is_file() and not p.name.startswith(".")}


async def _upload(http: Any, user: str, body: Any, *, name: str = "d.csv") -> Any:
    return await http.post(
        "/internal/uploads", params={"filename": name}, content=body, headers={"X-Aidp-User": user}
    )


def _quota_refusal(text: str) -> None:
    assert "Storage quota exceeded" in text, text
    assert "AIDP_USER_STORAGE_QUOTA_BYTES" in text, text


async def test_upload_past_the_quota_is_413_and_leaves_nothing(tmp_path: Path) -> None:
    async with (
        running_fetcher(tmp_path, user_storage_quota_bytes=100 * KB) as f,
        f.client() as http,
    ):
        first = await _upload(http, ALICE, os.urandom(60 * KB))
        assert first.status_code == 201, first.text
        before = _blobs(f)

        declared = await _upload(http, ALICE, os.urandom(60 * KB))  # Content-Length known
        assert declared.status_code == 413, declared.text
        assert declared.json()["error"]["code"] == "quota_exceeded"
        _quota_refusal(declared.json()["error"]["message"])

        async def chunked():  # no length: cut off by the running count
            for _ in range(15):
                yield os.urandom(4 * KB)

        streamed = await _upload(http, ALICE, chunked())
        assert streamed.status_code == 413, streamed.text
        _quota_refusal(streamed.json()["error"]["message"])

        # nothing of either refused body is left: no blob, no upload row, no artifact
        assert _blobs(f) == before
        with f.cache.db.session() as s:
            assert len(s.query(Upload).all()) == 1
            assert len(s.query(Artifact).all()) == 1
        # the quota is per user, and what still fits is taken
        assert (await _upload(http, BOB, os.urandom(60 * KB))).status_code == 201
        assert (await _upload(http, ALICE, os.urandom(30 * KB))).status_code == 201


async def test_fetch_past_the_quota_fails_the_run(tmp_path: Path, hub: HubServer) -> None:
    for name in ("a", "b"):
        hub.commit(f"org/{name}", {"model.bin": os.urandom(MB)})
    async with running_fetcher(
        tmp_path, hf_endpoint=hub.url, user_storage_quota_bytes=MB + MB // 2
    ) as f:
        run_a = await f.start_run(spec("hf://org/a"), owner=ALICE)
        assert (await f.outcome(run_a)).type == "ArtifactsCached"
        refused = parse_payload(await f.fetch(spec("hf://org/b"), owner=ALICE))
        _quota_refusal(refused.reason)  # type: ignore[attr-defined]
        assert "hf://org/b" in refused.reason  # type: ignore[attr-defined]
        assert refused.retryable is False  # type: ignore[attr-defined]
        assert {a["source"] for a in f.cache.listing()} == {"hf://org/a"}  # b not stored
        # another user's quota is their own
        assert (await f.fetch(spec("hf://org/b"), owner=BOB)).type == "ArtifactsCached"
        # once Alice's run ends, its pin no longer counts
        await f.cancel(run_a)
        await asyncio.sleep(0.2)
        assert (await f.fetch(spec("hf://org/b"), owner=ALICE)).type == "ArtifactsCached"


async def test_eviction_takes_the_requesters_own_entries_first(
    tmp_path: Path, hub: HubServer
) -> None:
    for name in ("a", "b", "c", "d", "e"):
        hub.commit(f"org/{name}", {"model.bin": os.urandom(MB)})
    async with running_fetcher(tmp_path, hf_endpoint=hub.url, cache_max_gb=3.5 * MB / 1024**3) as f:

        async def cached(name: str, owner: str) -> Any:
            run = await f.start_run(spec(f"hf://org/{name}"), owner=owner)
            outcome = await f.outcome(run)
            assert outcome.type == "ArtifactsCached", outcome
            return run

        await cached("a", ALICE)  # pinned by Alice's active run
        await f.cancel(await cached("b", BOB))  # Bob's, unpinned, least recently used
        await asyncio.sleep(0.1)
        await f.cancel(await cached("c", ALICE))  # Alice's own, unpinned, newer
        await asyncio.sleep(0.2)
        # a fourth MB does not fit: Alice's own unpinned entry goes, not Bob's older one
        await cached("d", ALICE)
        assert {a["source"] for a in f.cache.listing()} == {
            "hf://org/a",
            "hf://org/b",
            "hf://org/d",
        }
        # Bob uses b again (a hit pins it); Alice filling the cache cannot evict it
        bob_run = await cached("b", BOB)
        refused = parse_payload(await f.fetch(spec("hf://org/e"), owner=ALICE))
        assert "Disk budget exceeded" in refused.reason  # type: ignore[attr-defined]
        assert "hf://org/b" in {a["source"] for a in f.cache.listing()}
        # Bob's entry is evictable again once his run ends
        await f.cancel(bob_run)
        await asyncio.sleep(0.2)
        assert (await f.fetch(spec("hf://org/e"), owner=ALICE)).type == "ArtifactsCached"
        assert "hf://org/b" not in {a["source"] for a in f.cache.listing()}
