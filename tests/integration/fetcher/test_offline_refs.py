"""The Hub down while a spec names a floating ref resolved before (issue 19 item 6).

On PostgreSQL and RabbitMQ: a second project naming ``@main`` is fetched at the ref's last
resolution from the cache with a ``CachedRevisionUsed`` warning (what ``HF_HUB_OFFLINE``
does for cached refs); ``strict_revisions: true`` fails instead; a ref never resolved, and a
private repo's cached entry for someone whose access cannot be checked, still fail (and the
warning, which names the commit, is never sent to them).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from shared.events import parse_payload
from tests.support.hf_server import HubServer
from tests.unit.fetcher.harness import running_fetcher, spec

pytestmark = pytest.mark.integration

OWNER = "6d1f7a6e-0000-4000-8000-00000000c0a1"
OTHER = "6d1f7a6e-0000-4000-8000-00000000c0b2"


def _warnings(fetcher: Any, run_id: uuid.UUID) -> list[Any]:
    return [
        parse_payload(e)
        for e in fetcher.events
        if e.run_id == run_id and e.type == "CachedRevisionUsed"
    ]


async def test_floating_ref_served_from_last_resolution_while_hub_is_down(
    tmp_path: Path, amqp_url: str, postgres_url: str
) -> None:
    with HubServer(lfs_threshold=1024) as hub:
        sha = hub.commit("org/tiny", {"config.json": b"{}", "model.bin": os.urandom(4096)})
        hub.gate("org/secret", token="hf_owner", private=True)
        hub.commit("org/secret", {"config.json": b"{}", "model.bin": os.urandom(4096)})
        async with running_fetcher(
            tmp_path, bus_url=amqp_url, database_url=postgres_url, hf_endpoint=hub.url
        ) as f:
            f.vault.put_user_secret(OWNER, "HF_TOKEN", "hf_owner")
            first = await f.fetch(spec("hf://org/tiny@main"), owner=OWNER)
            assert first.type == "ArtifactsCached"
            owned = await f.fetch(spec("hf://org/secret@main", secrets=["HF_TOKEN"]), owner=OWNER)
            assert owned.type == "ArtifactsCached"
            downloads = hub.downloads()

            hub.stop()  # the Hub is down from here on

            run = await f.start_run(spec("hf://org/tiny@main"), owner=OTHER)
            outcome = await f.outcome(run, timeout=60)
            assert outcome.type == "ArtifactsCached", parse_payload(outcome)
            cached = parse_payload(outcome).artifacts[0]  # type: ignore[attr-defined]
            assert cached.resolved_revision == sha
            (warning,) = _warnings(f, run)
            assert warning.resolved_revision == sha and warning.ref == "main"
            assert "Could not reach HuggingFace" in warning.reason
            assert "strict_revisions" in warning.reason
            assert hub.downloads() == downloads  # served from the cache

            # the spec may forbid it: then the run fails (retryable), no warning
            strict = {**spec("hf://org/tiny@main"), "strict_revisions": True}
            run = await f.start_run(strict, owner=OTHER)
            failed = await f.outcome(run, timeout=60)
            assert failed.type == "ArtifactsFailed"
            assert "Could not reach HuggingFace" in parse_payload(failed).reason  # type: ignore[attr-defined]
            assert not _warnings(f, run)

            # a ref never resolved before has nothing to fall back to
            run = await f.start_run(spec("hf://org/tiny@v2"), owner=OTHER)
            assert (await f.outcome(run, timeout=60)).type == "ArtifactsFailed"
            assert not _warnings(f, run)

            # a private repo's entry needs the requester's access checked by the Hub: with
            # the Hub down it is not served, and the commit is not revealed in a warning
            run = await f.start_run(spec("hf://org/secret@main"), owner=OTHER)
            refused = await f.outcome(run, timeout=60)
            assert refused.type == "ArtifactsFailed"
            assert not _warnings(f, run)

            # once the Hub is back, @main resolves live again (and a new commit is fetched)
            hub.start()
            newer = hub.commit("org/tiny", {"config.json": b'{"v": 2}'})
            back = parse_payload(await f.fetch(spec("hf://org/tiny@main"), owner=OTHER, timeout=60))
            assert back.artifacts[0].resolved_revision == newer  # type: ignore[attr-defined]
