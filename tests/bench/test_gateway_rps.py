"""``GET /api/projects`` with a valid token, as requests per second and as a ratio to a
bare FastAPI route (``GET /bench/bare``) on the same server process in the same run.

The gateway runs in its own process (uvicorn, one worker) on PostgreSQL and on an SQLite
file (embedded mode); the load comes from a minimal keep-alive HTTP/1.1 client (raw
asyncio streams, so the client is cheap next to the server) with 16 connections. Three
rounds, each measuring the bare route and then ``/api/projects``; the ratio of each round
is printed as min/median/max. Goal (issue 14): >= 0.5.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.gateway.conftest import SPEC, gateway_process, server_thread
from tests.unit.gateway.authstub import AuthStub

pytestmark = [pytest.mark.bench, pytest.mark.integration]

SECONDS = float(os.environ.get("AIDP_BENCH_RPS_SECONDS", "5"))
CONNECTIONS = 16
ROUNDS = 3

# the gateway app plus one bare route, served exactly like ``python -m services.gateway``
_SERVER = """
import uvicorn
from services.gateway.main import create_app
from services.gateway.settings import GatewaySettings
settings = GatewaySettings()
app = create_app(settings)
@app.get("/bench/bare", include_in_schema=False)
async def bare() -> dict[str, bool]:
    return {"ok": True}
uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
"""


@pytest.fixture(params=["postgres", "sqlite"])
def gateway(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres_url: str,
    amqp_url: str,
    bao_server: tuple[str, str],
) -> Iterator[tuple[str, AuthStub]]:
    stub = AuthStub()
    env = {"AIDP_USER_MAX_ACTIVE_RUNS": "0"}  # five projects, each with a queued run
    if request.param == "sqlite":
        env["AIDP_DATABASE_URL"] = f"sqlite:///{tmp_path / 'gateway.db'}"
    with server_thread(stub.app) as auth_url:
        with gateway_process(
            tmp_path,
            postgres_url=postgres_url,
            amqp_url=amqp_url,
            auth_url=auth_url,
            bao=bao_server,
            argv=[sys.executable, "-c", _SERVER],
            env=env,
        ) as url:
            yield url, stub


async def _load(url: str, path: str, headers: dict[str, str], seconds: float) -> int:
    host, port = url.removeprefix("http://").split(":")
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()
    deadline = time.monotonic() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.monotonic() < deadline:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200"), head[:60]
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                done += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return done


async def test_projects_rps_vs_bare_route(
    gateway: tuple[str, AuthStub], request: pytest.FixtureRequest
) -> None:
    url, stub = gateway
    user_id, email = stub.user()
    token = stub.token(user_id, email, exp=int(time.time()) + 600)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=30) as http:
        for i in range(5):
            r = await http.post(
                f"{url}/api/projects", json={"name": f"p{i}", "spec": SPEC}, headers=headers
            )
            assert r.status_code == 201, r.text
        assert len((await http.get(f"{url}/api/projects", headers=headers)).json()) == 5
    await _load(url, "/bench/bare", {}, 1)  # warm up
    await _load(url, "/api/projects", headers, 1)
    ratios: list[float] = []
    rates: dict[str, list[float]] = {"bare": [], "projects": []}
    for _ in range(ROUNDS):
        bare = await _load(url, "/bench/bare", {}, SECONDS) / SECONDS
        projects = await _load(url, "/api/projects", headers, SECONDS) / SECONDS
        rates["bare"].append(bare)
        rates["projects"].append(projects)
        ratios.append(projects / bare)
    database = request.node.callspec.params["gateway"]
    ratios.sort()
    print(
        f"\nGET /api/projects (5 projects, valid JWT, {database}): "
        f"{statistics.median(rates['projects']):,.0f} req/s median; bare FastAPI route on the "
        f"same server: {statistics.median(rates['bare']):,.0f} req/s median; ratio "
        f"min/median/max {ratios[0]:.2f}/{statistics.median(ratios):.2f}/{ratios[-1]:.2f} "
        f"(goal >= 0.5; {CONNECTIONS} keep-alive connections, {ROUNDS} rounds x {SECONDS:.0f}s)"
    )
    assert min(rates["projects"]) > 0
