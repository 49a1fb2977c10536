"""The Deployments page in headless Chromium against the whole platform (``aidp up``,
issue 16): a project's run deploys v1, a second deployment of it runs beside (keep
previous, not promoted); the page lists both with state, version, replicas and the live
marker, moves the marker with "Make live", asks before stopping, stops and starts again.
Screenshots land in ``tests/e2e/artifacts/web-deployments/`` (ignored by git, kept by CI);
their paths are printed."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cli.harness import ROOT, Platform, running_platform, tiny_spec
from tests.e2e.web.test_web_flow import _ensure_ui_built
from tests.support.pipeline import ApiUser

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

ARTIFACTS = ROOT / "tests" / "e2e" / "artifacts" / "web-deployments"
PASSWORD = "e2e-Password-123"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    _ensure_ui_built()
    with running_platform(tmp_path_factory.mktemp("deployments-platform")) as running:
        yield running


def _wait_running(user: ApiUser, dep_id: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = user.http.get(f"/api/deployments/{dep_id}").json()["status"]
        if status == "running":
            return
        time.sleep(1)
    raise AssertionError(f"deployment {dep_id} is {status}, not running")


def test_deployments_page(platform: Platform) -> None:
    user = ApiUser(platform.url, f"d-{uuid.uuid4().hex[:8]}@example.com", PASSWORD)
    project = user.create_project(tiny_spec("served", max_steps=8))
    run = user.wait_for_run(project["current_run_id"], timeout=600)
    assert run["status"] == "deployed", f"{run}\n{platform.log_tail()}"
    live = run["deployment_id"]
    models = user.http.get(f"/api/projects/{project['id']}/models").json()
    r = user.http.post(
        f"/api/models/{models[0]['id']}/deploy", json={"keep_previous": True, "promote": False}
    )
    assert r.status_code == 202, r.text
    other = r.json()["deployment_id"]
    _wait_running(user, other)

    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    scenario = {"email": user.email, "password": PASSWORD, "live": live, "other": other}
    proc = subprocess.run(
        [
            "node",
            str(Path(__file__).with_name("deployments.mjs")),
            platform.url,
            str(ARTIFACTS),
            json.dumps(scenario),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    seen = json.loads(lines[-1]) if lines else {}
    print("screenshots:", *seen.get("screenshots", []), sep="\n  ")
    assert proc.returncode == 0, (
        f"{seen.get('error') or proc.stderr}\nsteps: {seen.get('steps')}\n"
        f"--- platform log ---\n{platform.log_tail()}"
    )
    assert seen["rows"] == 2
    assert seen["live_before"] == 1 and seen["other_live_before"] == 0
    for text in (seen["live_row_text"], seen["other_row_text"]):
        assert "v1" in text and "running" in text and "1/1" in text and "never" in text
    assert "live endpoint" in seen["notice_promote"]
    assert "Stop this deployment?" in seen["confirm_text"]
    assert seen["still_running_while_asking"] == "running"  # nothing stopped before confirming
    assert seen["start_buttons"] == 1 and seen["final_status"] == "running"
    assert seen["page_width"] <= 1280
    assert not [e for e in seen["console_errors"] if "Failed to load resource" not in e], seen
    assert (ARTIFACTS / "deployments-01-list.png").is_file()
    assert (ARTIFACTS / "deployments-02-confirm-stop.png").is_file()
    # what the browser did is what the API says
    listed = {d["id"]: d for d in user.http.get("/api/deployments").json()}
    assert listed[other]["live"] is True and listed[live]["status"] == "running"
