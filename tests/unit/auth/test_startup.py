"""The auth service starts in two phases: its context exists before it is ready."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.auth import main
from services.auth.context import AuthContext
from shared.runtime import EventHandler, ServiceRuntime
from shared.secrets import InMemoryVault
from tests.unit.auth.conftest import make_settings


def test_the_context_is_wired_before_the_queue_is_subscribed(
    tmp_path: Path, vault: InMemoryVault, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[bool, AuthContext]] = []

    def handlers(runtime: ServiceRuntime, ctx: AuthContext) -> dict[str, EventHandler]:
        seen.append((runtime.ready, ctx))
        return {}

    monkeypatch.setattr(main, "build_handlers", handlers)
    app = main.create_app(make_settings(tmp_path), vault=(vault, vault))
    with TestClient(app):
        assert [ready for ready, _ in seen] == [False]  # wired before readiness
        assert app.state.auth is seen[0][1] and app.state.runtime.ready
    assert not app.state.runtime.ready


def test_an_unknown_route_and_bad_input_have_the_error_shape(client: TestClient) -> None:
    r = client.get("/api/auth/nowhere")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.post("/api/auth/login", json={"email": "a@example.com", "password": 1, "x": 2})
    assert r.status_code == 422
    message = r.json()["error"]["message"]
    assert "x: extra inputs are not permitted" in message and "password: " in message
