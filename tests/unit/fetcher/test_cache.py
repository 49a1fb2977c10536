"""Cache behaviour: Kaggle, uploads, single-flight, corruption, eviction, encryption at rest."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from shared.events import parse_payload
from tests.support.hf_server import HubServer
from tests.support.kaggle_server import KaggleServer
from tests.unit.fetcher.harness import running_fetcher, spec

OWNER = "6d1f7a6e-0000-4000-8000-00000000000a"
SECRET_TEXT = b"the quick brown fox knows the plaintext canary 7f3a9c"


async def test_kaggle_versions_credentials_and_403(
    tmp_path: Path, hub: HubServer, kaggle: KaggleServer
) -> None:
    hub.commit("org/tiny", {"config.json": b"{}"})
    kaggle.add_user("alice", token="KGAT_alice")
    kaggle.publish("alice/reviews", {"train.csv": b"text,label\nok,1\n"})
    kaggle.publish("alice/reviews", {"train.csv": b"text,label\nok,1\nbad,0\n"})
    kaggle.publish("carol/private", {"x.csv": b"x"})
    kaggle.restrict("carol/private", allowed=["carol"])
    async with running_fetcher(
        tmp_path,
        hf_endpoint=hub.url,
        kaggle_api_environment="TEST",
        kaggle_endpoint=kaggle.endpoint,
    ) as f:
        none = parse_payload(
            await f.fetch(spec("hf://org/tiny", "kaggle://alice/reviews"), owner=OWNER)
        )
        assert "KAGGLE_API_TOKEN" in none.reason  # type: ignore[attr-defined]
        f.vault.put_user_secret(OWNER, "KAGGLE_API_TOKEN", "KGAT_alice")
        s = ["KAGGLE_API_TOKEN"]
        latest = parse_payload(
            await f.fetch(spec("hf://org/tiny", "kaggle://alice/reviews", s), owner=OWNER)
        )
        first = parse_payload(
            await f.fetch(spec("hf://org/tiny", "kaggle://alice/reviews@1", s), owner=OWNER)
        )
        assert latest.artifacts[1].resolved_revision == "2"  # type: ignore[attr-defined]
        assert first.artifacts[1].resolved_revision == "1"  # type: ignore[attr-defined]
        denied = parse_payload(
            await f.fetch(spec("hf://org/tiny", "kaggle://carol/private", s), owner=OWNER)
        )
        assert "denied access" in denied.reason and "403" in denied.reason  # type: ignore[attr-defined]
        downloads = kaggle.downloads()
        # a pinned version is a cache hit, authorised with the requester's credentials
        again = await f.fetch(spec("hf://org/tiny", "kaggle://alice/reviews@1", s), owner=OWNER)
        assert again.type == "ArtifactsCached" and kaggle.downloads() == downloads


async def test_uploads_belong_to_their_owner(tmp_path: Path, hub: HubServer) -> None:
    hub.commit("org/tiny", {"config.json": b"{}"})
    async with running_fetcher(tmp_path, hf_endpoint=hub.url) as f, f.client() as http:

        async def body():  # streamed, in pieces
            for _ in range(4):
                yield SECRET_TEXT * 1000

        r = await http.post(
            "/internal/uploads",
            params={"filename": "data.csv"},
            content=body(),
            headers={"X-Aidp-User": OWNER},
        )
        assert r.status_code == 201, r.text
        uri = r.json()["uri"]
        assert r.json()["size_bytes"] == len(SECRET_TEXT) * 4000
        mine = await f.fetch(spec("hf://org/tiny", uri), owner=OWNER)
        assert mine.type == "ArtifactsCached"
        theirs = parse_payload(await f.fetch(spec("hf://org/tiny", uri)))
        assert "only be used by the user who uploaded it" in theirs.reason  # type: ignore[attr-defined]
        assert (
            await http.post("/internal/uploads", params={"filename": "x"}, content=b"1")
        ).status_code == 401
        listing = (await http.get("/internal/artifacts", params={"all": "true"})).json()
        assert {a["source"] for a in listing} == {"hf://org/tiny", uri}


async def test_single_flight_downloads_once(tmp_path: Path, hub: HubServer) -> None:
    hub.commit("org/big", {"model.bin": os.urandom(2 << 20), "config.json": b"{}"})
    hub.bytes_per_second = 8 << 20
    async with running_fetcher(tmp_path, hf_endpoint=hub.url) as f:
        runs = [await f.start_run(spec("hf://org/big")) for _ in range(4)]
        outcomes = await asyncio.gather(*(f.outcome(r) for r in runs))
        assert {o.type for o in outcomes} == {"ArtifactsCached"}
        assert hub.downloads() == 2  # config.json + model.bin, once for all four runs


async def test_corrupt_blob_is_detected_and_fetched_again(tmp_path: Path, hub: HubServer) -> None:
    sha = hub.commit("org/tiny", {"model.bin": os.urandom(8192)})
    async with running_fetcher(tmp_path, hf_endpoint=hub.url, verify_cached=True) as f:
        ref = parse_payload(await f.fetch(spec(f"hf://org/tiny@{sha}"))).artifacts[0]  # type: ignore[attr-defined]
        blob = next(x.digest for x in f.cache.store.get_manifest(ref.cache_key).files)
        path = f.cache.store.path_of(blob)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        before = hub.downloads()
        again = await f.fetch(spec(f"hf://org/tiny@{sha}"))
        assert again.type == "ArtifactsCached" and hub.downloads() == before + 1
        assert b"".join(f.cache.store.read(blob))  # healthy again


async def test_lru_eviction_keeps_pinned_and_budget_failure(tmp_path: Path, hub: HubServer) -> None:
    mb = 1 << 20
    for name in ("a", "b", "c"):
        hub.commit(f"org/{name}", {"model.bin": os.urandom(mb)})
    hub.commit("org/huge", {"model.bin": os.urandom(3 * mb)})
    async with running_fetcher(tmp_path, hf_endpoint=hub.url, cache_max_gb=2.5 * mb / 1024**3) as f:
        run_a = await f.start_run(spec("hf://org/a"))
        await f.outcome(run_a)
        run_b = await f.start_run(spec("hf://org/b"))
        await f.outcome(run_b)
        await f.cancel(run_b)  # b is no longer pinned; a still is
        await asyncio.sleep(0.2)
        assert (await f.fetch(spec("hf://org/c"))).type == "ArtifactsCached"
        sources = {a["source"] for a in f.cache.listing()}
        assert sources == {"hf://org/a", "hf://org/c"}  # b (LRU, unpinned) evicted, a pinned kept
        huge = parse_payload(await f.fetch(spec("hf://org/huge")))
        assert "Disk budget exceeded" in huge.reason  # type: ignore[attr-defined]


async def test_no_plaintext_under_the_cache(tmp_path: Path, hub: HubServer) -> None:
    hub.commit(
        "datasets/org/reviews".removeprefix("datasets/"),
        {"train.csv": SECRET_TEXT * 50},
        repo_type="dataset",
    )
    hub.commit("org/tiny", {"config.json": b"{}"})
    async with running_fetcher(tmp_path, hf_endpoint=hub.url) as f:
        done = await f.fetch(spec("hf://org/tiny", "hf://datasets/org/reviews"))
        assert done.type == "ArtifactsCached"
        store = f.store_dir
        for path in [*store.rglob("*"), *f.settings.resolved_work_dir().rglob("*")]:
            if path.is_file():
                assert SECRET_TEXT[:20] not in path.read_bytes(), path
        assert any(store.rglob("*"))


async def test_upload_over_its_limit_leaves_nothing_behind(tmp_path: Path) -> None:
    """An upload without a length is counted as it streams; past AIDP_MAX_UPLOAD_BYTES it
    is answered 413 and its partial (encrypted) file is removed (issue 13)."""
    async with (
        running_fetcher(tmp_path, max_upload_bytes=64 * 1024) as f,
        f.client() as http,
    ):

        async def body():  # 1 MiB in 16 KiB pieces, no Content-Length
            for _ in range(64):
                yield b"z" * (16 * 1024)

        r = await http.post(
            "/internal/uploads",
            params={"filename": "big.csv"},
            content=body(),
            headers={"X-Aidp-User": OWNER},
        )
        assert r.status_code == 413, r.text
        assert "AIDP_MAX_UPLOAD_BYTES" in r.json()["error"]["message"]
        left = [p for p in f.store_dir.rglob("*") if p.is_file() and p.parent != f.store_dir]
        assert left == [], left  # no blob, no temp file (the store's own markers aside)
        listing = (await http.get("/internal/artifacts", params={"all": "true"})).json()
        assert listing == []
        # under the limit, the same route still takes the file
        ok = await http.post(
            "/internal/uploads",
            params={"filename": "small.csv"},
            content=b"a,b\n1,2\n",
            headers={"X-Aidp-User": OWNER},
        )
        assert ok.status_code == 201, ok.text
