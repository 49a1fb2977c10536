"""Credentialed cache entries are authorised on every hit (issue 12 item 3): a private
HuggingFace repo fetched with its owner's token is not served to another user who names the
same pinned commit, and the artifact listing shows each user only their projects' artifacts."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from shared.events import parse_payload
from tests.support.hf_server import HubServer
from tests.unit.fetcher.harness import running_fetcher, spec

OWNER = "6d1f7a6e-0000-4000-8000-0000000000a1"
OTHER = "6d1f7a6e-0000-4000-8000-0000000000b2"
WEIGHTS = os.urandom(4096)


async def test_private_repo_hit_needs_the_requesters_own_access(
    tmp_path: Path, hub: HubServer
) -> None:
    hub.gate("org/private", token="hf_owner", private=True)
    sha = hub.commit("org/private", {"config.json": b"{}", "model.bin": WEIGHTS})
    pinned = f"hf://org/private@{sha}"
    async with running_fetcher(tmp_path, hf_endpoint=hub.url) as f:
        f.vault.put_user_secret(OWNER, "HF_TOKEN", "hf_owner")
        owned = await f.fetch(spec(pinned, secrets=["HF_TOKEN"]), owner=OWNER)
        assert owned.type == "ArtifactsCached"
        ref = parse_payload(owned).artifacts[0]  # type: ignore[attr-defined]
        downloads = hub.downloads()
        assert downloads == 2

        # another user, no token, the same pinned commit: refused, nothing served
        refused = await f.fetch(spec(pinned), owner=OTHER)
        assert refused.type == "ArtifactsFailed"  # before issue 12: the private weights
        theirs = parse_payload(refused)
        assert theirs.source == pinned  # type: ignore[attr-defined]
        assert "Permission denied" in theirs.reason and not theirs.retryable  # type: ignore[attr-defined]
        assert "hf_owner" not in theirs.reason  # type: ignore[attr-defined]
        # ... nor with a token of their own that the repo does not accept
        f.vault.put_user_secret(OTHER, "HF_TOKEN", "hf_other")
        wrong = parse_payload(await f.fetch(spec(pinned, secrets=["HF_TOKEN"]), owner=OTHER))
        assert "Permission denied" in wrong.reason and not wrong.retryable  # type: ignore[attr-defined]
        # ... nor through a branch name (resolved with their credentials, as before)
        branch = await f.fetch(spec("hf://org/private@main"), owner=OTHER)
        assert branch.type == "ArtifactsFailed"
        assert "not found" in parse_payload(branch).reason  # type: ignore[attr-defined]

        # the owner's second pinned fetch is still a cache hit (checked, not downloaded)
        again = parse_payload(await f.fetch(spec(pinned, secrets=["HF_TOKEN"]), owner=OWNER))
        assert again.artifacts[0] == ref  # type: ignore[attr-defined]
        assert hub.downloads() == downloads
        assert all("hf_owner" not in e.model_dump_json() for e in f.events)


async def test_gated_repo_whose_info_is_public_is_not_shared(
    tmp_path: Path, hub: HubServer
) -> None:
    """As on huggingface.co, the gated repo's info and file list answer anyone; only its
    files need access. Neither a hit nor a new revision built from stored blobs leaks."""
    hub.gate("org/gated", token="hf_owner", metadata_public=True)
    sha = hub.commit("org/gated", {"config.json": b"{}", "model.bin": WEIGHTS})
    async with running_fetcher(tmp_path, hf_endpoint=hub.url) as f:
        f.vault.put_user_secret(OWNER, "HF_TOKEN", "hf_owner")
        owned = await f.fetch(spec(f"hf://org/gated@{sha}", secrets=["HF_TOKEN"]), owner=OWNER)
        assert owned.type == "ArtifactsCached"
        downloads = hub.downloads()
        for uri in (f"hf://org/gated@{sha}", "hf://org/gated@main"):
            refused = await f.fetch(spec(uri), owner=OTHER)
            assert refused.type == "ArtifactsFailed", uri
            reason = parse_payload(refused).reason  # type: ignore[attr-defined]
            assert "Permission denied" in reason and "gated" in reason
        # a new commit with the same files: every blob is already stored
        hub.commit("org/gated", {"config.json": b"{}"}, message="same content")
        refused = await f.fetch(spec("hf://org/gated@main"), owner=OTHER)
        assert refused.type == "ArtifactsFailed"
        assert "Permission denied" in parse_payload(refused).reason  # type: ignore[attr-defined]
        again = await f.fetch(spec(f"hf://org/gated@{sha}", secrets=["HF_TOKEN"]), owner=OWNER)
        assert again.type == "ArtifactsCached" and hub.downloads() == downloads


async def test_public_repo_fetched_with_a_token_is_shared(tmp_path: Path, hub: HubServer) -> None:
    sha = hub.commit("org/public", {"config.json": b"{}", "model.bin": WEIGHTS})
    pinned = f"hf://org/public@{sha}"
    async with running_fetcher(tmp_path, hf_endpoint=hub.url) as f:
        f.vault.put_user_secret(OWNER, "HF_TOKEN", "hf_owner")
        first = await f.fetch(spec(pinned, secrets=["HF_TOKEN"]), owner=OWNER)
        assert first.type == "ArtifactsCached"
        downloads = hub.downloads()
        # anonymous: checked once (the repo answers without a token), then shared
        anonymous = await f.fetch(spec(pinned), owner=OTHER)
        assert anonymous.type == "ArtifactsCached" and hub.downloads() == downloads
        hub.stop()
        offline = await f.fetch(spec(pinned), owner=OTHER)
        assert offline.type == "ArtifactsCached"  # public now: no network needed


async def test_listing_is_per_project_and_hides_upload_digests_and_queries(
    tmp_path: Path, hub: HubServer
) -> None:
    hub.commit("org/a", {"config.json": b'{"a":1}'})
    hub.commit("org/b", {"config.json": b'{"b":1}'})
    async with running_fetcher(tmp_path, hf_endpoint=hub.url) as f, f.client() as http:
        r = await http.post(
            "/internal/uploads",
            params={"filename": "d.csv"},
            content=b"text,label\nok,1\n",
            headers={"X-Aidp-User": OWNER},
        )
        upload = r.json()
        run_a = await f.start_run(spec("hf://org/a", upload["uri"]), owner=OWNER)
        assert (await f.outcome(run_a)).type == "ArtifactsCached"
        run_b = await f.start_run(spec("hf://org/b"), owner=OTHER)
        assert (await f.outcome(run_b)).type == "ArtifactsCached"
        project = {}
        with f.app.state.runtime.db.session() as s:
            from services.fetcher.models import FetchJob

            for run in (run_a, run_b):
                job = s.get(FetchJob, run)
                assert job is not None
                project[run] = str(job.project_id)

        async def listing(user: str, **params: str) -> list[dict[str, object]]:
            answer = await http.get(
                "/internal/artifacts", params=params, headers={"X-Aidp-User": user}
            )
            assert answer.status_code == 200, answer.text
            return answer.json()  # type: ignore[no-any-return]

        mine = await listing(OWNER, project_id=project[run_a])
        assert {a["source"] for a in mine} == {"hf://org/a", upload["uri"]}
        up = next(a for a in mine if a["source"] == upload["uri"])
        assert up["digest"] == upload["digest"]
        # the same project seen by another member: no digest of the owner's upload
        member = await listing(OTHER, project_id=project[run_a])
        up = next(a for a in member if a["source"] == upload["uri"])
        assert up["digest"] is None and up["resolved_revision"] is None
        assert upload["digest"] not in str(member)
        assert {a["source"] for a in await listing(OTHER, project_id=project[run_b])} == {
            "hf://org/b"
        }
        assert await listing(OTHER) == []  # no project named: nothing
        assert await listing(OTHER, project_id=str(uuid.uuid4())) == []
        everything = await listing(OTHER, all="true")  # the gateway's admin view
        assert {a["source"] for a in everything} == {"hf://org/a", "hf://org/b", upload["uri"]}
        assert upload["digest"] not in str(everything)


def test_url_sources_are_listed_without_query_or_user_info() -> None:
    from shared.urls import public_url as _public_source  # what the listing shows

    assert (
        _public_source("https://user:pw@data.example.com:8443/d/x.csv?sig=SECRET#frag")
        == "https://data.example.com:8443/d/x.csv"
    )
    assert _public_source("https://[2001:db8::1]/x?t=1") == "https://[2001:db8::1]/x"
    assert _public_source("hf://org/a") == "hf://org/a"
