"""The gateway and the real auth service on PostgreSQL, RabbitMQ and OpenBao.

Each server runs under uvicorn in its own thread (its own event loop), so sync tests
(schemathesis) and async tests (WebSocket clients) both talk to it over real sockets.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from services.auth.main import create_app as create_auth_app
from services.auth.settings import AuthSettings
from services.gateway.main import create_app as create_gateway_app
from services.gateway.settings import GatewaySettings
from tests.support.infra import free_port, wait_http_ready

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]

PASSWORD = "correct-Horse-battery-9"
SPEC: dict[str, Any] = {
    "name": "demo",
    "model": "hf://sentence-transformers/all-MiniLM-L6-v2@main",
    "dataset": "hf://datasets/stanfordnlp/imdb@main",
    "task": "text-classification",
}


@contextmanager
def server_thread(app: Any) -> Iterator[str]:
    """Serve ``app`` under uvicorn in a thread; yields ``http://127.0.0.1:<port>``."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def vault_client(bao_server: tuple[str, str]) -> Any:
    from shared.secrets.vault import VaultClient

    addr, token = bao_server
    client = VaultClient(addr, token=token, prefix=f"test-{uuid.uuid4().hex[:12]}")
    client.ensure_mounts()
    client.ensure_key("aidp-artifacts")
    return client


@dataclass
class User:
    id: str
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Platform:
    url: str
    auth_url: str
    amqp_url: str
    postgres_url: str
    client: httpx.Client
    users: list[User] = field(default_factory=list)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/api/ws"

    def user(self) -> User:
        """Register and log in a fresh user through the gateway's /api/auth proxy."""
        email = f"u{uuid.uuid4().hex[:10]}@example.com"
        r = self.client.post("/api/auth/register", json={"email": email, "password": PASSWORD})
        assert r.status_code == 201, r.text
        r = self.client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        me = self.client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200, me.text
        user = User(id=str(me.json()["id"]), email=email, token=token)
        self.users.append(user)
        return user

    def project(self, owner: User, **spec: Any) -> dict[str, Any]:
        r = self.client.post(
            "/api/projects", json={"name": "p", "spec": {**SPEC, **spec}}, headers=owner.headers
        )
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]


def auth_settings(tmp_path: Path, postgres_url: str, amqp_url: str) -> AuthSettings:
    return AuthSettings(
        data_dir=tmp_path,
        database_url=postgres_url,
        bus_url=amqp_url,
        login_limit_per_address=0,
        login_limit_per_email=0,
        argon2_memory_kib=19456,
    )


def gateway_settings(
    tmp_path: Path, postgres_url: str, amqp_url: str, auth_url: str, **kw: Any
) -> GatewaySettings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "database_url": postgres_url,
        "bus_url": amqp_url,
        "auth_url": auth_url,
        "fetcher_url": "http://127.0.0.1:9",
        "trainer_url": "http://127.0.0.1:9",
        "provisioner_url": "http://127.0.0.1:9",
        "web_dist": tmp_path / "no-web",
        "ws_poll_interval": 0.1,
    }
    values.update(kw)
    return GatewaySettings(**values)


@pytest.fixture
def platform(
    tmp_path: Path, postgres_url: str, amqp_url: str, vault_client: Any
) -> Iterator[Platform]:
    """Auth + gateway on one fresh PostgreSQL database, one fresh vhost, one Vault prefix."""
    vault = (vault_client, vault_client)
    auth_app = create_auth_app(auth_settings(tmp_path, postgres_url, amqp_url), vault=vault)
    with server_thread(auth_app) as auth_url:
        gateway_app = create_gateway_app(
            gateway_settings(tmp_path, postgres_url, amqp_url, auth_url), vault=vault
        )
        with server_thread(gateway_app) as url, httpx.Client(base_url=url, timeout=30) as client:
            yield Platform(url, auth_url, amqp_url, postgres_url, client)


@contextmanager
def gateway_process(
    tmp_path: Path,
    *,
    postgres_url: str,
    amqp_url: str,
    auth_url: str,
    bao: tuple[str, str],
    env: dict[str, str] | None = None,
    argv: list[str] | None = None,
) -> Iterator[str]:
    """Run ``python -m services.gateway`` (or ``argv``): yields its URL once ready, then
    stops it (SIGTERM, SIGKILL after 20 s)."""
    port = free_port()
    environ = {
        **os.environ,
        "AIDP_PORT": str(port),
        "AIDP_DATA_DIR": str(tmp_path / f"gw-{port}"),
        "AIDP_DATABASE_URL": postgres_url,
        "AIDP_BUS_URL": amqp_url,
        "AIDP_AUTH_URL": auth_url,
        "AIDP_FETCHER_URL": "http://127.0.0.1:9",
        "AIDP_TRAINER_URL": "http://127.0.0.1:9",
        "AIDP_PROVISIONER_URL": "http://127.0.0.1:9",
        "AIDP_VAULT_ADDR": bao[0],
        "AIDP_VAULT_TOKEN": bao[1],
        "AIDP_WS_POLL_INTERVAL": "0.1",
        "AIDP_WEB_DIST": str(tmp_path / "no-web"),
        "AIDP_LOG_LEVEL": "WARNING",
        **(env or {}),
    }
    command = argv or [sys.executable, "-m", "services.gateway"]
    proc = subprocess.Popen(command, cwd=REPO, env=environ)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_http_ready(f"{url}/readyz", timeout=90, proc=proc):
            raise RuntimeError("gateway process did not become ready")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


async def publish_all(amqp_url: str, envelopes: list[Any]) -> None:
    """Publish envelopes on RabbitMQ (publisher confirms), in order."""
    from shared.bus import create_bus

    bus = create_bus(amqp_url)
    await bus.connect()
    try:
        for envelope in envelopes:
            await bus.publish(envelope)
    finally:
        await bus.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)
