"""``aidp webhooks``: add prints the signing secret once, list shows short ids, remove and
deliveries take a unique prefix of the webhook id."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from cli import webhooks
from cli.main import app
from cli.sdk import Client

P = "11111111-0000-4000-8000-000000000001"
H = "abcdef12-0000-4000-8000-000000000001"


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    hook = {"id": H, "url": "https://ci.example.com/h", "format": "json", "events": ["run.failed"]}

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        path = request.url.path
        if path == "/api/projects":
            return httpx.Response(200, json=[{"id": P, "name": "demo", "role": "owner"}])
        if path == f"/api/projects/{P}/webhooks" and request.method == "POST":
            assert json.loads(request.content)["events"] == ["run.failed"]
            return httpx.Response(201, json={**hook, "secret": "whsec_once"})
        if path == f"/api/projects/{P}/webhooks":
            return httpx.Response(200, json=[hook])
        if path == f"/api/projects/{P}/webhooks/{H}/deliveries":
            return httpx.Response(200, json=[{"id": H, "kind": "run.failed", "status": "failed"}])
        if path == f"/api/projects/{P}/webhooks/{H}" and request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "nope"}})

    client = Client("http://x", api_token="aidp_t", transport=httpx.MockTransport(handle))
    monkeypatch.setattr(webhooks.Client, "from_config", classmethod(lambda cls: client))
    return seen


def test_add_list_deliveries_remove(calls: list[str]) -> None:
    runner = CliRunner()
    r = runner.invoke(
        app, ["webhooks", "add", "demo", "https://ci.example.com/h", "-e", "run.failed"]
    )
    assert r.exit_code == 0, r.output
    assert "whsec_once" in r.output and "shown once" in r.output
    r = runner.invoke(app, ["webhooks", "list", "demo"])
    assert r.exit_code == 0 and "abcdef12" in r.output and H not in r.output
    r = runner.invoke(app, ["webhooks", "deliveries", "demo", "abcd"])
    assert r.exit_code == 0 and "run.failed" in r.output
    r = runner.invoke(app, ["webhooks", "remove", "demo", "abc"])
    assert r.exit_code == 0 and f"webhook {H} removed" in r.output
    assert f"DELETE /api/projects/{P}/webhooks/{H}" in calls
    r = runner.invoke(app, ["webhooks", "remove", "demo", "0000"])
    assert r.exit_code == 1 and "webhook '0000' not found" in r.output
