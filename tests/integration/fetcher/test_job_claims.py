"""Two replicas on one PostgreSQL database resume the same pending jobs at the same moment:
each job is run (fetch called) and reported (one outcome event) by exactly one of them."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from services.fetcher.models import FetchJob
from shared.secrets import InMemoryVault
from tests.support.hf_server import HubServer
from tests.unit.fetcher.harness import running_fetcher, spec

pytestmark = pytest.mark.integration


async def test_concurrent_resume_reports_each_job_once(tmp_path: Path, postgres_url: str) -> None:
    with HubServer(lfs_threshold=1024) as hub:
        hub.commit("org/model", {"model.bin": os.urandom(256 << 10), "config.json": b"{}"})
        hub.bytes_per_second = 4 << 20
        common: dict[str, Any] = {
            "bus_url": f"memory://claims-{uuid.uuid4().hex[:8]}",  # one broker for both
            "database_url": postgres_url,
            "hf_endpoint": hub.url,
            "store_dir": tmp_path / "store",
            "vault": InMemoryVault(),  # one key service for the shared store
        }
        async with (
            running_fetcher(tmp_path / "a", **common) as a,
            running_fetcher(tmp_path / "b", **common) as b,
        ):
            # cached first, so that both replicas would finish each job at the same moment
            assert (await a.fetch(spec("hf://org/model"))).type == "ArtifactsCached"
            calls: Counter[uuid.UUID] = Counter()
            for replica in (a, b):
                fetcher = replica.app.state.runner.fetcher
                real = fetcher.fetch

                def counted(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
                    calls[kwargs["run_id"]] += 1
                    return _real(*args, **kwargs)

                fetcher.fetch = counted
            runs = [a.add_pending_job(spec("hf://org/model")) for _ in range(8)]
            await asyncio.gather(a.app.state.runner.resume(), b.app.state.runner.resume())
            for run in runs:
                assert (await a.outcome(run, timeout=60)).type == "ArtifactsCached"
            await asyncio.sleep(0.5)  # a duplicate would arrive by now
            assert all(len(a.outcomes(run)) == 1 for run in runs), [
                len(a.outcomes(r)) for r in runs
            ]
            assert all(calls[run] == 1 for run in runs), calls
            holders = {a.app.state.runner.holder, b.app.state.runner.holder}
            with a.app.state.runtime.db.session() as s:
                for run in runs:
                    job = s.get(FetchJob, run)
                    assert job is not None and job.status == "done" and job.claimed_by in holders
