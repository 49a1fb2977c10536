"""Job claims: a job held by a live replica is left alone; an expired claim is taken over."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

from services.fetcher.models import FetchJob, utcnow
from tests.support.hf_server import HubServer
from tests.unit.fetcher.harness import running_fetcher, spec


async def test_expired_claim_of_a_dead_replica_is_taken_over(
    tmp_path: Path, hub: HubServer
) -> None:
    hub.commit("org/tiny", {"model.bin": os.urandom(4096)})
    async with running_fetcher(tmp_path, hf_endpoint=hub.url, lease_seconds=0.4) as f:
        expires = utcnow() + timedelta(seconds=1.5)
        run = f.add_pending_job(spec("hf://org/tiny"), claimed_by="dead", claim_expires_at=expires)
        started = time.monotonic()
        outcome = await f.outcome(run, timeout=20)
        assert outcome.type == "ArtifactsCached"
        assert time.monotonic() - started >= 1.0  # not before the dead replica's claim expired
        with f.app.state.runtime.db.session() as s:
            job = s.get(FetchJob, run)
            assert job is not None and job.status == "done"
            assert job.claimed_by == f.app.state.runner.holder
        assert len(f.outcomes(run)) == 1


async def test_claims_are_exclusive_and_finished_jobs_are_not_claimable(
    tmp_path: Path, hub: HubServer
) -> None:
    hub.commit("org/tiny", {"config.json": b"{}"})
    async with running_fetcher(tmp_path, hf_endpoint=hub.url, lease_seconds=30) as f:
        runner = f.app.state.runner
        live = f.add_pending_job(
            spec("hf://org/tiny"), claimed_by="other", claim_expires_at=utcnow() + timedelta(60)
        )
        assert not runner.try_claim(live)
        free = f.add_pending_job(spec("hf://org/tiny"), claimed_by="x", claim_expires_at=utcnow())
        assert runner.try_claim(free) and runner.try_claim(free)  # take over, then renew
        runner.start(free)
        assert (await f.outcome(free)).type == "ArtifactsCached"
        assert not runner.try_claim(free)  # done: nobody claims it again
