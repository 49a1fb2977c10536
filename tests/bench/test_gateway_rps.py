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


def _server_pid(url: str) -> int:
    """The pid of the gateway serving ``url`` (by its AIDP_PORT)."""
    wanted = f"AIDP_PORT={url.rsplit(':', 1)[1]}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"create_app" not in (entry / "cmdline").read_bytes():
                continue
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                return int(entry.name)
        except OSError:
            continue
    raise LookupError(f"no gateway process for {url}")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid``: barely moved by the neighbours on a busy machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    pid = _server_pid(url)
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    rates: dict[str, list[float]] = {"bare": [], "projects": []}
    cpu_us: dict[str, list[float]] = {"bare": [], "projects": []}
    for _ in range(ROUNDS):
        for name, path, hdrs in (
            ("bare", "/bench/bare", {}),
            ("projects", "/api/projects", headers),
        ):
            cpu = _cpu_seconds(pid)
            done = await _load(url, path, hdrs, SECONDS)
            cpu_us[name].append((_cpu_seconds(pid) - cpu) / done * 1e6)
            rates[name].append(done / SECONDS)
        ratios.append(rates["projects"][-1] / rates["bare"][-1])
        cpu_ratios.append(cpu_us["bare"][-1] / cpu_us["projects"][-1])
    database = request.node.callspec.params["gateway"]

    def spread(values: list[float]) -> str:
        return f"{min(values):.2f}/{statistics.median(values):.2f}/{max(values):.2f}"

    print(
        f"\nGET /api/projects (5 projects, valid JWT, {database}): "
        f"{statistics.median(rates['projects']):,.0f} req/s median; bare FastAPI route on the "
        f"same server: {statistics.median(rates['bare']):,.0f} req/s median; ratio "
        f"min/median/max {spread(ratios)} "
        f"(goal >= 0.5; {CONNECTIONS} keep-alive connections, {ROUNDS} rounds x {SECONDS:.0f}s)\n"
        f"  server CPU per request: /api/projects "
        f"{statistics.median(cpu_us['projects']):.0f} us, bare "
        f"{statistics.median(cpu_us['bare']):.0f} us (medians); bare / projects "
        f"min/median/max {spread(cpu_ratios)} — the ratio a server that has a core to itself "
        f"reaches, whatever the neighbours take (load {os.getloadavg()[0]:.1f})"
    )
    assert min(rates["projects"]) > 0
