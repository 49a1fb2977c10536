"""Issue 13: the per-address login limit could be dodged with ``X-Forwarded-For`` in
embedded mode, because uvicorn believes that header from loopback by default. Served the
way ``aidp up`` serves (``services.embedded``'s proxy options), a local client's forged
header changes nothing: the peer address is counted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from services.auth.main import create_app
from services.embedded import gateway_trusted_proxies
from services.gateway.settings import GatewaySettings
from shared.secrets import InMemoryVault
from tests.support.infra import free_port
from tests.unit.auth.conftest import make_settings


@asynccontextmanager
async def _served(app: FastAPI, trusted: str) -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def _attempts(url: str, count: int) -> list[int]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        codes = []
        for i in range(count):
            r = await client.post(
                "/api/auth/login",
                json={"email": f"nobody{i}@example.com", "password": "Wrong-password-1"},
                headers={"X-Forwarded-For": f"203.0.113.{i}"},  # a new "address" each time
            )
            codes.append(r.status_code)
        return codes


async def test_forged_forwarded_for_from_loopback_is_not_believed(tmp_path: Path) -> None:
    trusted = gateway_trusted_proxies(GatewaySettings(data_dir=tmp_path))
    assert trusted == ""  # by default no proxy is trusted
    vault = InMemoryVault()
    # The auth app stands in for the gateway: like it, it takes the peer address as seen
    # by uvicorn (the gateway copies request.client.host into X-Forwarded-For for auth).
    settings = make_settings(tmp_path, trust_forwarded_for=False, login_limit_per_address=3)
    app = create_app(settings, vault=(vault, vault))
    async with _served(app, trusted) as url:
        assert await _attempts(url, 4) == [401, 401, 401, 429]


async def test_a_configured_proxy_is_believed(tmp_path: Path) -> None:
    trusted = gateway_trusted_proxies(
        GatewaySettings(data_dir=tmp_path, forwarded_allow_ips="127.0.0.1")
    )
    vault = InMemoryVault()
    settings = make_settings(tmp_path, trust_forwarded_for=False, login_limit_per_address=3)
    app = create_app(settings, vault=(vault, vault))
    async with _served(app, trusted) as url:
        # each request names another client behind the trusted proxy: separate buckets
        assert await _attempts(url, 4) == [401, 401, 401, 401]


def test_trusted_proxies_setting_names_the_proxies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIDP_TRUSTED_PROXIES", "10.9.8.7")
    assert gateway_trusted_proxies(GatewaySettings(data_dir=tmp_path)) == "10.9.8.7"
