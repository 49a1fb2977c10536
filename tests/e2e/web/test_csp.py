"""The gateway's Content-Security-Policy in a real browser (issue 13).

The gateway serves the built web UI (web/dist) and the local Swagger UI at ``/api/docs``
under ``default-src 'self'``; headless Chromium loads both and the test fails on any console
error, uncaught exception, failed request or ``securitypolicyviolation`` event (an inline
script or a CDN asset the policy blocks). Fast: one gateway, one browser, two pages.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from services.gateway.main import create_app
from shared.internal import register_inproc, unregister_inproc
from shared.secrets import InMemoryVault
from tests.e2e.cli.harness import ROOT
from tests.unit.gateway.authstub import AuthStub
from tests.unit.gateway.conftest import gateway_settings, serve

pytestmark = [pytest.mark.timeout(180)]

CHROMIUM = Path("/usr/bin/chromium")
WEB = ROOT / "web"
PATHS = ["/", "/api/docs"]
#: a page the policy must block (inline script, inline style): proves the browser side
#: reports violations, so an empty error list on the real pages means something
PROBE = "/csp-probe.html"
PROBE_HTML = (
    "<!doctype html><html><head><title>probe</title><style>body{color:red}</style></head>"
    "<body><p>probe</p><script>document.title = 'inline ran'</script></body></html>"
)


def _ensure_ui_built() -> None:
    if shutil.which("node") is None or not CHROMIUM.exists():
        pytest.fail("needs node and /usr/bin/chromium (scripts/bootstrap.sh installs them)")
    if not (WEB / "node_modules" / "playwright-core").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True)
    if not (WEB / "dist" / "index.html").is_file():
        subprocess.run(["npm", "run", "build"], cwd=WEB, check=True)


async def _load_in_chromium(url: str) -> dict[str, dict[str, object]]:
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(Path(__file__).with_name("csp.mjs")),
        url,
        *PATHS,
        PROBE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-4000:]
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    assert lines, f"no report from the browser: {out.decode()[-2000:]} {err.decode()[-2000:]}"
    return json.loads(lines[-1])  # type: ignore[no-any-return]


async def test_ui_and_api_docs_load_under_the_csp_without_violations(tmp_path: Path) -> None:
    _ensure_ui_built()
    stub = AuthStub()
    name = f"auth-csp-{uuid.uuid4().hex[:8]}"
    register_inproc(name, stub.app)
    vault = InMemoryVault()
    dist = tmp_path / "dist"
    shutil.copytree(WEB / "dist", dist)
    (dist / PROBE.lstrip("/")).write_text(PROBE_HTML)
    try:
        settings = gateway_settings(tmp_path, f"inproc://{name}", web_dist=dist)
        app = create_app(settings, vault=(vault, vault))
        async with serve(app) as url:
            report = await _load_in_chromium(url)
    finally:
        unregister_inproc(name)
    assert set(report) == {*PATHS, PROBE}, report
    probe = report.pop(PROBE)
    violations = [e for e in probe["errors"] if str(e).startswith("csp:")]  # type: ignore[attr-defined]
    assert any("script-src" in v for v in violations), probe
    assert any("style-src" in v for v in violations), probe
    assert probe["title"] == "probe", probe  # the inline script did not run
    for path, page in report.items():
        assert page["status"] == 200, (path, page)
        # the policy really was in force (else "no violation" would prove nothing)
        assert "default-src 'self'" in str(page["csp"]), (path, page)
        assert page["errors"] == [], (path, page)
        assert page["text"], (path, page)  # something rendered
    assert (
        "swagger" in str(report["/api/docs"]["title"]).lower()
        or "aidp" in str(report["/api/docs"]["text"]).lower()
    ), report["/api/docs"]
