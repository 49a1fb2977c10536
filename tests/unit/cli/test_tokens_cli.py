"""``aidp tokens``: create with scopes and expiry (shown once), list with scopes and
short ids, revoke by name or by a unique id prefix."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from cli import account
from cli.main import app
from cli.sdk import Client

T1 = "7e57aaaa-0000-4000-8000-000000000001"
T2 = "7e57bbbb-0000-4000-8000-000000000002"


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    rows = [
        {"id": T1, "name": "ci", "scopes": ["read", "run"], "created_at": None},
        {"id": T2, "name": "laptop", "scopes": ["read"], "created_at": None},
    ]

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.url.path == "/api/auth/tokens" and request.method == "POST":
            body = json.loads(request.content)
            assert body == {"name": "ci", "scopes": ["read", "run"], "expires_in_days": 30}
            return httpx.Response(201, json={**rows[0], "token": "aidp_secretvalue"})
        if request.url.path == "/api/auth/tokens":
            return httpx.Response(200, json=rows)
        if request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "nope"}})

    client = Client("http://x", api_token="aidp_t", transport=httpx.MockTransport(handle))
    monkeypatch.setattr(account.Client, "from_config", classmethod(lambda cls: client))
    return seen


def test_create_list_revoke(calls: list[str]) -> None:
    runner = CliRunner()
    r = runner.invoke(
        app, ["tokens", "create", "ci", "-s", "read", "-s", "run", "--expires-days", "30"]
    )
    assert r.exit_code == 0, r.output
    assert "aidp_secretvalue" in r.output and "[read, run]" in r.output
    r = runner.invoke(app, ["tokens", "list"])
    assert r.exit_code == 0 and "7e57aaaa" in r.output and T1 not in r.output
    assert runner.invoke(app, ["tokens", "list", "--wide"]).output.count("-4000-") == 2
    r = runner.invoke(app, ["tokens", "revoke", "laptop"])
    assert r.exit_code == 0 and f"DELETE /api/auth/tokens/{T2}" in calls
    r = runner.invoke(app, ["tokens", "revoke", "7e57a"])
    assert r.exit_code == 0 and f"DELETE /api/auth/tokens/{T1}" in calls
    r = runner.invoke(app, ["tokens", "revoke", "7e57"])
    assert r.exit_code == 2 and "matches 2 API tokens" in r.output
