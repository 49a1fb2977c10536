"""Fixtures for the auth service's unit tests: the app on SQLite + InMemoryVault."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.auth.main import create_app
from services.auth.settings import AuthSettings
from shared.bus import Bus
from shared.secrets import InMemoryVault
from tests.support.service_auth import as_service

PASSWORD = "correct-Horse-battery"


def make_settings(tmp_path: Path, **overrides: Any) -> AuthSettings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "database_url": f"sqlite:///{tmp_path / 'auth.db'}",
        "bus_url": "memory://",
    }
    values.update(overrides)
    return AuthSettings(**values)


@pytest.fixture
def vault() -> InMemoryVault:
    return InMemoryVault()


@pytest.fixture
def make_client(tmp_path: Path, vault: InMemoryVault) -> Iterator[Callable[..., TestClient]]:
    """Start an auth app (lifespan entered) with settings overrides; closed at teardown."""
    clients: list[TestClient] = []

    def start(*, bus: Bus | None = None, **overrides: Any) -> TestClient:
        app = create_app(make_settings(tmp_path, **overrides), bus=bus, vault=(vault, vault))
        client = TestClient(app)
        client.auth = as_service("auth")  # its internal routes answer the gateway only
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in reversed(clients):
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


def register(client: TestClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    r = client.post("/api/auth/register", json={"email": email, "password": password})
    assert r.status_code == 201, r.text
    return dict(r.json())


def login(client: TestClient, email: str, password: str = PASSWORD, **kw: Any) -> dict[str, Any]:
    """Log in as a non-browser client (the refresh token in the body)."""
    body = {"email": email, "password": password, "refresh_token_delivery": "body"}
    r = client.post("/api/auth/login", json=body, **kw)
    assert r.status_code == 200, r.text
    return dict(r.json())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
