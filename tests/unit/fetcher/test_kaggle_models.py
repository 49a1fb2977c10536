"""Kaggle models (kaggle://models/owner/slug/framework/variation[@version]) through the
real kagglesdk client against the local Kaggle server."""

from __future__ import annotations

import os
from pathlib import Path

from shared.events import parse_payload
from tests.support.kaggle_server import KaggleServer
from tests.unit.fetcher.harness import running_fetcher, spec

OWNER = "6d1f7a6e-0000-4000-8000-00000000000b"
WEIGHTS = os.urandom(20_000)
MODEL = "kaggle://models/google/tiny-bert/pytorch/base"


async def test_model_versions_content_and_failures(tmp_path: Path, kaggle: KaggleServer) -> None:
    kaggle.add_user("alice", token="KGAT_alice")
    kaggle.publish_model("google/tiny-bert/PyTorch/base", {"config.json": b'{"v": 1}'})
    kaggle.publish_model(
        "google/tiny-bert/PyTorch/base",
        {"config.json": b'{"v": 2}', "weights/model.bin": WEIGHTS},
    )
    async with running_fetcher(
        tmp_path, kaggle_api_environment="TEST", kaggle_endpoint=kaggle.endpoint
    ) as f:
        f.vault.put_user_secret(OWNER, "KAGGLE_API_TOKEN", "KGAT_alice")
        s = ["KAGGLE_API_TOKEN"]
        latest = parse_payload(await f.fetch(spec(MODEL, secrets=s), owner=OWNER))
        ref = latest.artifacts[0]  # type: ignore[attr-defined]
        assert (
            ref.resolved_revision == "2"
            and ref.source == "kaggle://models/google/tiny-bert/pytorch/base"
        )
        files = {x.path: x.digest for x in f.cache.store.get_manifest(ref.cache_key).files}
        assert sorted(files) == ["config.json", "weights/model.bin"]
        assert b"".join(f.cache.store.read(files["weights/model.bin"])) == WEIGHTS
        first = parse_payload(await f.fetch(spec(f"{MODEL}@1", secrets=s), owner=OWNER))
        assert first.artifacts[0].resolved_revision == "1"  # type: ignore[attr-defined]

        unknown = parse_payload(
            await f.fetch(
                spec("kaggle://models/google/tiny-bert/pytorch/nope", secrets=s), owner=OWNER
            )
        )
        assert "Kaggle model 'google/tiny-bert/pytorch/nope' was not found" in unknown.reason  # type: ignore[attr-defined]
        framework = parse_payload(
            await f.fetch(
                spec("kaggle://models/google/tiny-bert/caffe/base", secrets=s), owner=OWNER
            )
        )
        assert "unknown Kaggle model framework 'caffe'" in framework.reason  # type: ignore[attr-defined]
        assert "pytorch" in framework.reason  # type: ignore[attr-defined]
        no_creds = parse_payload(await f.fetch(spec(MODEL), owner=OWNER))
        assert "KAGGLE_API_TOKEN" in no_creds.reason  # type: ignore[attr-defined]

        downloads = kaggle.downloads()
        # a pinned version is a cache hit (no download), authorised with the requester's
        # credentials (one model instance lookup); without any, the hit is refused
        again = await f.fetch(spec(f"{MODEL}@2", secrets=s), owner=OWNER)
        assert again.type == "ArtifactsCached" and kaggle.downloads() == downloads
        refused = parse_payload(await f.fetch(spec(f"{MODEL}@2")))
        assert "Permission denied" in refused.reason and not refused.retryable  # type: ignore[attr-defined]
        kaggle.stop()
        offline = parse_payload(await f.fetch(spec(f"{MODEL}@2", secrets=s), owner=OWNER))
        assert offline.retryable and "Could not reach Kaggle" in offline.reason  # type: ignore[attr-defined]
