"""HuggingFace sources through the real huggingface_hub client against a local Hub."""

from __future__ import annotations

import os
from pathlib import Path

from shared.events import parse_payload
from tests.support.hf_server import HubServer
from tests.unit.fetcher.harness import running_fetcher, spec

WEIGHTS = os.urandom(4096)


async def test_branch_tag_and_sha_resolve_to_commits(tmp_path: Path, hub: HubServer) -> None:
    first = hub.commit("org/tiny", {"config.json": b'{"v":1}', "model.bin": WEIGHTS})
    hub.create_tag("org/tiny", "v1", first)
    second = hub.commit("org/tiny", {"config.json": b'{"v":2}'})
    async with running_fetcher(tmp_path, hf_endpoint=hub.url) as f:
        main = parse_payload(await f.fetch(spec("hf://org/tiny@main")))
        tag = parse_payload(await f.fetch(spec("hf://org/tiny@v1")))
        sha = parse_payload(await f.fetch(spec(f"hf://org/tiny@{first}")))
        assert main.artifacts[0].resolved_revision == second  # type: ignore[attr-defined]
        assert tag.artifacts[0].resolved_revision == first  # type: ignore[attr-defined]
        assert sha.artifacts[0].cache_key == tag.artifacts[0].cache_key  # type: ignore[attr-defined]
        # the branch moves: @main now resolves to the new commit
        third = hub.commit("org/tiny", {"extra.txt": b"new"})
        moved = parse_payload(await f.fetch(spec("hf://org/tiny")))
        assert moved.artifacts[0].resolved_revision == third  # type: ignore[attr-defined]
        files = f.cache.store.get_manifest(moved.artifacts[0].cache_key).files  # type: ignore[attr-defined]
        assert [x.path for x in files] == ["config.json", "extra.txt", "model.bin"]


async def test_dedupe_across_revisions_and_main_reuses_blobs(
    tmp_path: Path, hub: HubServer
) -> None:
    hub.commit("org/tiny", {"config.json": b'{"v":1}', "model.bin": WEIGHTS})
    async with running_fetcher(tmp_path, hf_endpoint=hub.url) as f:
        await f.fetch(spec("hf://org/tiny@main"))
        blobs_before = set(f.cache.store.iter_digests())
        hub.commit("org/tiny", {"config.json": b'{"v":2}'})
        downloads = hub.downloads()
        await f.fetch(spec("hf://org/tiny@main"))
        # only the changed small file was downloaded; the weights were reused
        assert hub.downloads() - downloads == 1
        new = set(f.cache.store.iter_digests()) - blobs_before
        assert len(new) == 2  # the new config.json + the new manifest; model.bin stored once


async def test_pinned_revision_is_served_offline(tmp_path: Path, hub: HubServer) -> None:
    sha = hub.commit("org/tiny", {"config.json": b"{}", "model.bin": WEIGHTS})
    async with running_fetcher(tmp_path, hf_endpoint=hub.url) as f:
        cold = parse_payload(await f.fetch(spec(f"hf://org/tiny@{sha}")))
        hub.stop()
        seen = len(hub.requests)
        warm = parse_payload(await f.fetch(spec(f"hf://org/tiny@{sha}")))
        assert warm.artifacts == cold.artifacts  # type: ignore[attr-defined]
        assert len(hub.requests) == seen  # no network at all
        failed = parse_payload(await f.fetch(spec("hf://org/tiny@main")))
        assert failed.retryable and "Could not reach HuggingFace" in failed.reason  # type: ignore[attr-defined]


async def test_failure_messages(tmp_path: Path, hub: HubServer) -> None:
    hub.commit("org/tiny", {"config.json": b"{}"})
    hub.gate("org/gated", token="hf_good")
    hub.commit("org/gated", {"config.json": b"{}"})
    async with running_fetcher(tmp_path, hf_endpoint=hub.url) as f:
        unknown = parse_payload(await f.fetch(spec("hf://org/nope")))
        assert "'org/nope' was not found" in unknown.reason and not unknown.retryable  # type: ignore[attr-defined]
        bad_rev = parse_payload(await f.fetch(spec("hf://org/tiny@nope")))
        assert "has no revision 'nope'" in bad_rev.reason  # type: ignore[attr-defined]
        gated = parse_payload(await f.fetch(spec("hf://org/gated")))
        assert "is gated" in gated.reason and "HF_TOKEN" in gated.reason  # type: ignore[attr-defined]
        owner = "6d1f7a6e-0000-4000-8000-000000000001"
        f.vault.put_user_secret(owner, "HF_TOKEN", "hf_good")
        ok = await f.fetch(spec("hf://org/gated", secrets=["HF_TOKEN"]), owner=owner)
        assert ok.type == "ArtifactsCached"
        f.vault.put_user_secret(owner, "HF_TOKEN", "hf_wrong")
        denied = parse_payload(
            await f.fetch(spec("hf://org/gated@main", secrets=["HF_TOKEN"]), owner=owner)
        )
        assert "has no access" in denied.reason  # type: ignore[attr-defined]
        assert all("hf_good" not in e.model_dump_json() for e in f.events)


async def test_progress_is_reported(tmp_path: Path, hub: HubServer) -> None:
    hub.commit("org/big", {"model.bin": os.urandom(3 << 20)})
    hub.bytes_per_second = 20 << 20
    async with running_fetcher(tmp_path, hf_endpoint=hub.url, progress_interval=0.02) as f:
        run = await f.start_run(spec("hf://org/big"))
        assert (await f.outcome(run)).type == "ArtifactsCached"
        progress = [
            parse_payload(e) for e in f.events if e.type == "FetchProgress" and e.run_id == run
        ]
        assert progress and progress[-1].bytes_done == 3 << 20  # type: ignore[attr-defined]
