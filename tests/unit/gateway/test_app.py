"""OpenAPI, ops endpoints, metrics, and the web UI."""

from __future__ import annotations

from pathlib import Path

import httpx

from services.gateway.main import create_app
from shared.secrets import InMemoryVault
from tests.unit.gateway.conftest import Harness, gateway_settings


async def test_openapi_lists_error_statuses(harness: Harness) -> None:
    spec = (await harness.client.get("/api/openapi.json")).json()
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    operations = [
        (path, method, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if path.startswith("/api/") and not path.startswith("/api/auth/")
    ]
    assert len(operations) >= 25
    # The auth service's routes come from its own document (here the stand-in's; the real
    # one's statuses are checked end to end) in place of the forwarding route.
    assert "/api/auth/login" in spec["paths"] and "/api/auth/{path}" not in spec["paths"]
    for path, method, op in operations:
        codes = set(op["responses"])
        assert {"401", "422"} <= codes, (path, method)
        if "{" in path and path != "/api/secrets/{name}":
            assert "404" in codes, (path, method)
        if method != "get" and "{" in path and not path.startswith("/api/secrets"):
            assert "403" in codes, (path, method)
        assert op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "ErrorOut"
        )


async def test_health_ready_metrics(harness: Harness) -> None:
    c = harness.client
    assert (await c.get("/healthz")).json() == {"status": "ok"}
    ready = await c.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {
        "started": True,
        "db": True,
        "bus": True,
        "vault": True,
        "auth": True,
    }
    _, headers = harness.login()
    await c.get("/api/projects", headers=headers)
    await c.get("/api/projects/00000000-0000-0000-0000-000000000000", headers=headers)
    text = (await c.get("/metrics")).text
    assert 'aidp_http_requests_total{method="GET",route="/api/projects",status="200"} 1.0' in text
    assert 'route="/api/projects/{project_id}",status="404"' in text
    assert "aidp_ws_clients" in text and "aidp_ws_events_relayed_total" in text


async def test_not_ready_when_auth_is_down(harness: Harness) -> None:
    downstream = harness.app.state.gateway.downstream.auth
    downstream.url, downstream._client = "http://127.0.0.1:9", None
    ready = await harness.client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["auth"] is False


async def test_unknown_api_path_is_json_404(harness: Harness) -> None:
    r = await harness.client.get("/api/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def test_web_ui_with_spa_fallback(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<html>app</html>")
    (dist / "assets" / "app.js").write_text("console.log(1)")
    vault = InMemoryVault()
    app = create_app(
        gateway_settings(tmp_path, "inproc://none", web_dist=dist), vault=(vault, vault)
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
            assert (await c.get("/")).text == "<html>app</html>"
            assert (await c.get("/projects/123")).text == "<html>app</html>"
            js = await c.get("/assets/app.js")
            assert js.text == "console.log(1)" and "immutable" in js.headers["cache-control"]
            assert (await c.get("/../../etc/passwd")).text == "<html>app</html>"
            assert (await c.get("/api/nope")).status_code == 404
            assert (await c.get("/api/projects")).status_code == 401
