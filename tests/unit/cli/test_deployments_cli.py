"""``aidp deployments …`` (issue 16) against a small stand-in of the gateway's deployments
routes: the table shows state, version, replicas and the live one; stop asks first and
stops nothing when refused; start/promote/rollback call the right routes; ids take a
unique prefix."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app

D1 = "d1d1d1d1-0000-4000-8000-000000000001"
D2 = "d2d2d2d2-0000-4000-8000-000000000002"
P1 = "11111111-aaaa-4000-8000-000000000001"


class Gateway:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.deployments = {
            D1: {"id": D1, "project_id": P1, "project_name": "demo", "model_version": 2,
                 "status": "running", "live": True, "replicas": 2, "replicas_up": 2,
                 "idle_timeout_s": 600, "created_at": "2026-11-30T10:00:00+00:00"},
            D2: {"id": D2, "project_id": P1, "project_name": "demo", "model_version": 1,
                 "status": "stopped", "live": False, "replicas": 1, "replicas_up": 0,
                 "idle_timeout_s": None, "created_at": "2026-11-29T10:00:00+00:00"},
        }  # fmt: skip
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                gateway.calls.append(("GET", self.path, None))
                if self.path.startswith("/api/deployments?") or self.path == "/api/deployments":
                    return self._answer(200, list(gateway.deployments.values()))
                if self.path == "/api/projects":
                    return self._answer(200, [{"id": P1, "name": "demo", "role": "owner"}])
                dep = gateway.deployments.get(self.path.rsplit("/", 1)[-1])
                if dep is not None:
                    return self._answer(200, dep)
                self._answer(404, {"error": {"code": "not_found", "message": "not found"}})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                gateway.calls.append(("POST", self.path, body))
                parts = self.path.strip("/").split("/")
                if parts[:2] == ["api", "deployments"] and parts[2] in gateway.deployments:
                    dep = dict(gateway.deployments[parts[2]])
                    dep["status"] = {"stop": "stopped", "start": "starting"}.get(
                        parts[3], "running"
                    )
                    return self._answer(200, dep)
                if parts[-1] == "rollback":
                    return self._answer(202, {"project_id": P1, "deployment_id": D1})
                self._answer(404, {"error": {"code": "not_found", "message": "not found"}})

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def posts(self) -> list[tuple[str, Any]]:
        return [(path, body) for method, path, body in self.calls if method == "POST"]


@pytest.fixture
def gateway(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    server = Gateway()
    monkeypatch.setenv("AIDP_SERVER", server.url)
    monkeypatch.setenv("AIDP_TOKEN", "aidp_test")
    monkeypatch.setenv("COLUMNS", "200")
    yield server
    server.server.shutdown()


runner = CliRunner()


def test_list_shows_state_version_replicas_and_the_live_one(gateway: Gateway) -> None:
    result = runner.invoke(app, ["deployments", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    first = next(line for line in lines if "d1d1d1d1" in line)
    assert "demo" in first and "v2" in first and "running" in first and "live" in first
    assert "2/2" in first and "600s" in first
    second = next(line for line in lines if "d2d2d2d2" in line)
    assert "stopped" in second and "live" not in second and "never" in second
    result = runner.invoke(app, ["deployments", "list", "--json"])
    assert {d["id"] for d in json.loads(result.output)} == {D1, D2}
    result = runner.invoke(app, ["deployments", "list", "--project", "demo"])
    assert result.exit_code == 0
    assert ("GET", f"/api/deployments?project_id={P1}", None) in gateway.calls


def test_stop_asks_first(gateway: Gateway) -> None:
    refused = runner.invoke(app, ["deployments", "stop", "d1d1"], input="n\n")
    assert refused.exit_code != 0
    assert "live endpoint of demo" in refused.output
    assert gateway.posts() == []  # nothing stopped
    done = runner.invoke(app, ["deployments", "stop", "d1d1"], input="y\n")
    assert done.exit_code == 0, done.output
    assert gateway.posts() == [(f"/api/deployments/{D1}/stop", None)]
    assert "stopped" in done.output
    runner.invoke(app, ["deployments", "stop", D2, "--yes"])
    assert gateway.posts()[-1] == (f"/api/deployments/{D2}/stop", None)


def test_start_promote_rollback(gateway: Gateway) -> None:
    assert runner.invoke(app, ["deployments", "start", "d2d2"]).exit_code == 0
    result = runner.invoke(app, ["deployments", "promote", "d2d2", "--keep-previous"])
    assert result.exit_code == 0 and "promoted" in result.output
    assert runner.invoke(app, ["deployments", "rollback", "demo"]).exit_code == 0
    assert gateway.posts() == [
        (f"/api/deployments/{D2}/start", None),
        (f"/api/deployments/{D2}/promote", {"keep_previous": True}),
        (f"/api/projects/{P1}/endpoint/rollback", None),
    ]
    missing = runner.invoke(app, ["deployments", "stop", "ffff", "--yes"])
    assert missing.exit_code != 0 and gateway.posts()[-1][0].endswith("/rollback")
