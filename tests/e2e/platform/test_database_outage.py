"""Distributed mode through its dependencies' outages (issue 19 items 1 and 2).

PostgreSQL down for half a minute, then back, while three runs are in flight: requests
answer 503 with Retry-After meanwhile (never 500), consumers hold their messages instead of
dead-lettering them, the outbox relays what was committed, and every run finishes once, with
a gapless event log and one model. Then Vault sealed for twenty seconds: requests that need
it answer 503, /readyz names it, and once it is unsealed the services serve a new project
end to end.

The database and Vault are servers of this test's own (tests/support/private_postgres.py, an
OpenBao dev server started here), so stopping them disturbs no other test."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.e2e.platform.test_distributed import (
    _assert_event_log_sound,
    _env,
    _one_model_one_deployment,
    _wait,
)
from tests.support.cluster import running_cluster
from tests.support.hf_server import HubServer
from tests.support.infra import bao_binary, free_port, wait_http_ready
from tests.support.pipeline import TERMINAL, ApiUser, tiny_spec
from tests.support.private_postgres import private_postgres

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.integration]

OUTAGE_SECONDS = 30
SEALED_SECONDS = 20


@contextmanager
def _bao_with_unseal_key(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """An OpenBao dev server of this test's own: (address, root token, unseal key)."""
    port, token = free_port(), f"root-{uuid.uuid4().hex}"
    addr, log_path = f"http://127.0.0.1:{port}", tmp_path / "bao.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                bao_binary(),
                "server",
                "-dev",
                f"-dev-root-token-id={token}",
                f"-dev-listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        assert wait_http_ready(f"{addr}/v1/sys/health", timeout=30, proc=proc, interval=0.1)
        deadline = time.monotonic() + 15  # printed a moment after the API answers
        while (key := re.search(r"Unseal Key: (\S+)", log_path.read_text())) is None:
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        yield addr, token, key.group(1)
    finally:
        proc.terminate()
        proc.wait(10)


def _poll(user: ApiUser, path: str, seconds: float) -> list[httpx.Response]:
    answers: list[httpx.Response] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            answers.append(user.http.get(path, timeout=10))
        except httpx.TimeoutException:
            pass
        time.sleep(2)
    return answers


def _assert_unavailable_not_broken(answers: list[httpx.Response]) -> None:
    statuses = {r.status_code for r in answers}
    assert statuses and statuses <= {200, 503}, [(r.status_code, r.text) for r in answers]
    unavailable = [r for r in answers if r.status_code == 503]
    assert unavailable, "no request noticed the outage"
    assert all(r.headers.get("retry-after") for r in unavailable)
    assert all("error" in r.json() for r in unavailable)


def test_runs_survive_database_and_vault_outages(
    tmp_path: Path, amqp_url: str, hub: HubServer
) -> None:
    with private_postgres() as pg, _bao_with_unseal_key(tmp_path) as (addr, root, key):
        env = _env(tmp_path, amqp_url, pg.url, (addr, root), hub)
        with running_cluster(tmp_path / "cluster", env) as cluster:
            user = ApiUser(cluster.gateway_url)
            projects = [user.create_project(tiny_spec(max_steps=16)) for _ in range(3)]
            _wait(
                user,
                cluster,
                projects[0]["current_run_id"],
                timeout=600,
                until={"training", *TERMINAL},
            )
            pg.stop()
            answers = _poll(user, "/api/projects", OUTAGE_SECONDS)
            pg.start()
            _assert_unavailable_not_broken(answers)

            for project in projects:
                run = _wait(user, cluster, project["current_run_id"], timeout=900)
                assert run["status"] == "deployed", (run, cluster.logs())
                _assert_event_log_sound(user, run)
                _one_model_one_deployment(user, project["id"], deployed=True)
            assert "dead-lettering" not in cluster.logs()

            sealed = httpx.put(f"{addr}/v1/sys/seal", headers={"X-Vault-Token": root}, timeout=10)
            assert sealed.status_code == 204, sealed.text
            ready = httpx.get(f"{cluster.gateway_url}/readyz", timeout=30)
            assert ready.status_code == 503 and ready.json()["checks"]["vault"] is False
            answers = _poll(user, "/api/secrets", SEALED_SECONDS)
            unsealed = httpx.put(f"{addr}/v1/sys/unseal", json={"key": key}, timeout=10)
            assert unsealed.json()["sealed"] is False
            _assert_unavailable_not_broken(answers)

            project = user.create_project(tiny_spec(max_steps=8))
            run = _wait(user, cluster, project["current_run_id"], timeout=900)
            assert run["status"] == "deployed", (run, cluster.logs())
            assert user.http.get("/api/secrets").status_code == 200
