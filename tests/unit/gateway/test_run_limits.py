"""Per-user concurrent-runs limit (issue 13): ``AIDP_USER_MAX_ACTIVE_RUNS``.

Starts beyond the limit (project creation, a re-run) answer 429 naming the limit and the
setting, store nothing, and count only the requester's runs that are not finished.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.gateway.main import create_app
from shared.bus.memory import MemoryBus
from shared.secrets import InMemoryVault
from tests.unit.gateway.authstub import AuthStub
from tests.unit.gateway.conftest import SPEC, Harness, gateway_settings

LIMIT = 2


@pytest.fixture
async def limited(tmp_path: Path, auth: AuthStub) -> AsyncIterator[Harness]:
    vault = InMemoryVault()
    settings = gateway_settings(tmp_path, auth.url, user_max_active_runs=LIMIT)  # type: ignore[attr-defined]
    app = create_app(settings, vault=(vault, vault))
    publisher = MemoryBus("memory://")
    await publisher.connect()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield Harness(app, client, auth, vault, publisher)
    await publisher.close()


def _assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    body: dict[str, Any] = response.json()
    assert body["error"]["code"] == "too_many_active_runs", body
    assert "AIDP_USER_MAX_ACTIVE_RUNS" in body["error"]["message"], body
    assert f"limit is {LIMIT}" in body["error"]["message"], body
    assert int(response.headers["Retry-After"]) > 0


async def _create(harness: Harness, headers: dict[str, str]) -> httpx.Response:
    return await harness.client.post(
        "/api/projects", json={"name": "p", "spec": SPEC}, headers=headers
    )


async def test_project_creation_beyond_the_limit_is_429_and_stores_nothing(
    limited: Harness,
) -> None:
    _, alice = limited.login("alice@example.com")
    for _ in range(LIMIT):
        await limited.create_project(alice)
    _assert_limited(await _create(limited, alice))
    projects = (await limited.client.get("/api/projects", headers=alice)).json()
    assert len(projects) == LIMIT  # the refused creation left no project behind

    # the limit is per user: another user is not affected
    _, bob = limited.login("bob@example.com")
    assert (await _create(limited, bob)).status_code == 201


async def test_finished_runs_do_not_count_and_reruns_are_limited(limited: Harness) -> None:
    _, alice = limited.login("alice@example.com")

    async def cancel(run_id: str) -> None:
        r = await limited.client.post(f"/api/runs/{run_id}/cancel", headers=alice)
        assert r.status_code == 200, r.text

    first = await limited.create_project(alice)
    await limited.create_project(alice)
    await cancel(first["current_run_id"])
    # a cancelled run does not count: a third project fits
    third = await limited.create_project(alice)
    # back at the limit: a re-run of the first project (no run of its own active) is refused
    rerun_path = f"/api/projects/{first['id']}/runs"
    _assert_limited(await limited.client.post(rerun_path, headers=alice))
    await cancel(third["current_run_id"])
    rerun = await limited.client.post(rerun_path, headers=alice)
    assert rerun.status_code == 201, rerun.text
    _assert_limited(await _create(limited, alice))
    runs = (await limited.client.get(rerun_path, headers=alice)).json()
    assert len(runs) == 2  # the cancelled run 1 and run 2: the refused start stored none


async def test_default_limit_is_four(tmp_path: Path) -> None:
    assert gateway_settings(tmp_path, "inproc://x").user_max_active_runs == 4
