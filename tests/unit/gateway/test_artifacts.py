"""``GET /api/artifacts`` lists only the artifacts of the caller's projects (admins: all):
the gateway names the caller's projects to the fetcher, which filters (issue 12 item 3)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Query, Request

from shared.internal import register_inproc, unregister_inproc
from tests.unit.gateway.conftest import Harness


class FetcherStub:
    """``GET /internal/artifacts`` filtering a fixed table by ``project_id`` / ``all``."""

    def __init__(self) -> None:
        self.by_project: dict[str, list[dict[str, Any]]] = {}
        self.seen: list[tuple[str, list[str], bool]] = []
        self.app = FastAPI()

        @self.app.get("/internal/artifacts")
        def artifacts(
            request: Request,
            project_id: list[str] | None = Query(None),  # noqa: B008 - FastAPI idiom
            all_: bool = Query(False, alias="all"),  # noqa: FBT001, FBT003
        ) -> list[dict[str, Any]]:
            self.seen.append((request.headers["x-aidp-user"], sorted(project_id or []), all_))
            wanted = (
                self.by_project
                if all_
                else {p: self.by_project.get(p, []) for p in project_id or []}
            )
            return [item for items in wanted.values() for item in items]

    def add(self, project_id: str, source: str, *, digest: str | None = "d" * 64) -> None:
        self.by_project.setdefault(project_id, []).append(
            {
                "source": source,
                "kind": "model",
                "resolved_revision": None if digest is None else "abc",
                "digest": digest,
                "size_bytes": 3,
                "cache_key": None,
                "pinned": True,
            }
        )


@pytest.fixture
def fetcher(harness: Harness) -> Iterator[FetcherStub]:
    stub = FetcherStub()
    name = f"fetcher-{uuid.uuid4().hex[:6]}"
    register_inproc(name, stub.app)
    downstream = harness.app.state.gateway.downstream.fetcher
    downstream.url, downstream._client = f"inproc://{name}", None
    yield stub
    unregister_inproc(name)


async def test_artifacts_are_listed_per_project(harness: Harness, fetcher: FetcherStub) -> None:
    c = harness.client
    alice_id, alice = harness.login("alice@example.com")
    bob_id, bob = harness.login("bob@example.com")
    carol_id, carol = harness.login("carol@example.com")
    admin_id, admin = harness.login("admin@example.com", admin=True)
    p1 = (await harness.create_project(alice))["id"]
    p2 = (await harness.create_project(bob))["id"]
    fetcher.add(p1, "hf://alice/private")
    fetcher.add(p1, "upload://u-1", digest=None)  # another user's upload: no digest
    fetcher.add(p2, "hf://bob/model")

    async def sources(headers: dict[str, str]) -> set[str]:
        r = await c.get("/api/artifacts", headers=headers)
        assert r.status_code == 200, r.text
        return {a["source"] for a in r.json()}

    assert await sources(alice) == {"hf://alice/private", "upload://u-1"}
    assert fetcher.seen[-1] == (str(alice_id), [p1], False)
    listed = (await c.get("/api/artifacts", headers=alice)).json()
    assert next(a for a in listed if a["source"] == "upload://u-1")["digest"] is None
    assert await sources(bob) == {"hf://bob/model"}
    assert fetcher.seen[-1] == (str(bob_id), [p2], False)
    assert await sources(carol) == set()  # no project: nothing, not everything
    assert fetcher.seen[-1] == (str(carol_id), [], False)

    # a member of alice's project sees its artifacts too
    await harness.add_member(p1, alice, "bob@example.com", "viewer")
    assert await sources(bob) == {"hf://alice/private", "upload://u-1", "hf://bob/model"}
    assert fetcher.seen[-1] == (str(bob_id), sorted([p1, p2]), False)

    # platform admins see every artifact
    assert await sources(admin) == {"hf://alice/private", "upload://u-1", "hf://bob/model"}
    assert fetcher.seen[-1] == (str(admin_id), [], True)


async def test_an_answer_out_of_contract_is_a_502_not_passed_on(
    harness: Harness, fetcher: FetcherStub
) -> None:
    _, alice = harness.login("alice@example.com")
    project = (await harness.create_project(alice))["id"]
    fetcher.add(project, "hf://alice/model")
    del fetcher.by_project[project][0]["size_bytes"]  # the fetcher broke its contract
    r = await harness.client.get("/api/artifacts", headers=alice)
    assert r.status_code == 502, r.text
    error = r.json()["error"]
    assert error["code"] == "provider_error"
    assert error["message"] == "fetcher service answered an unexpected body"
    assert "hf://alice" not in r.text
