"""Auth service on real PostgreSQL and a real OpenBao (each test its own DB and KV prefix)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.auth.main import create_app
from services.auth.settings import AuthSettings
from shared.secrets.vault import VaultClient
from tests.support.service_auth import as_service


@pytest.fixture
def vault_client(bao_server: tuple[str, str]) -> Any:
    addr, token = bao_server
    client = VaultClient(addr, token=token, prefix=f"test-{uuid.uuid4().hex[:12]}")
    client.ensure_mounts()
    return client


@pytest.fixture
def make_pg_client(
    postgres_url: str, vault_client: Any, tmp_path: Any
) -> Iterator[Callable[..., TestClient]]:
    """Start an auth replica on the test's PostgreSQL database and OpenBao prefix."""
    clients: list[TestClient] = []

    def start(**overrides: Any) -> TestClient:
        settings = AuthSettings(
            data_dir=tmp_path, database_url=postgres_url, bus_url="memory://", **overrides
        )
        client = TestClient(create_app(settings, vault=(vault_client, vault_client)))
        client.auth = as_service("auth")  # embedded mode: in-process service keys
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in reversed(clients):
        client.__exit__(None, None, None)
