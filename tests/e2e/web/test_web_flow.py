"""The web UI in headless Chromium against the real platform (issue 7).

Sign up → create a project with the form → see live progress over the WebSocket → see it
deployed → predict; a second user cannot see the first user's project. Screenshots land in
``tests/e2e/artifacts/web/`` (ignored by git, kept by CI).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cli.harness import DATASET_REPO, MODEL_REPO, ROOT, Platform, running_platform

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1200)]

ARTIFACTS = ROOT / "tests" / "e2e" / "artifacts" / "web"
CHROMIUM = Path("/usr/bin/chromium")
WEB = ROOT / "web"


def _ensure_ui_built() -> None:
    node = shutil.which("node")
    if node is None or not CHROMIUM.exists():
        pytest.fail("needs node and /usr/bin/chromium (scripts/bootstrap.sh installs them)")
    if not (WEB / "node_modules" / "playwright-core").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True)
    if _dist_is_stale():
        subprocess.run(["npm", "run", "build"], cwd=WEB, check=True)


def _dist_is_stale() -> bool:
    """No build yet, or a source file changed after it (a stale UI fails the flow
    confusingly: the browser would drive yesterday's pages)."""
    built = WEB / "dist" / "index.html"
    if not built.is_file():
        return True
    sources = [WEB / "index.html", *(WEB / "src").rglob("*")]
    newest = max(p.stat().st_mtime for p in sources if p.is_file())
    return newest > built.stat().st_mtime


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    _ensure_ui_built()
    with running_platform(tmp_path_factory.mktemp("web-platform")) as running:
        yield running


def test_newcomer_flow_in_the_browser(platform: Platform) -> None:
    scenario = {
        "alice": f"alice-{uuid.uuid4().hex[:6]}@example.com",
        "bob": f"bob-{uuid.uuid4().hex[:6]}@example.com",
        "password": "e2e-Password-123",
        "train_timeout_s": 600,
        "form": {
            "name": "web-demo",
            "model": MODEL_REPO,
            "dataset": DATASET_REPO,
            "epochs": 3,
            "learning_rate": 0.003,
            "batch_size": 8,
            "max_steps": 24,
            "checkpoint_every": 8,
        },
    }
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    proc = subprocess.run(
        [
            "node",
            str(Path(__file__).with_name("flow.mjs")),
            platform.url,
            str(ARTIFACTS),
            json.dumps(scenario),
        ],
        capture_output=True,
        text=True,
        timeout=1100,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    seen = json.loads(lines[-1]) if lines else {}
    assert proc.returncode == 0, (
        f"{seen.get('error') or proc.stderr}\nsteps: {seen.get('steps')}\n"
        f"--- platform log ---\n{platform.log_tail()}"
    )
    assert seen["predictions"] == 2
    assert str(seen["upload_yaml"]).startswith("upload://")
    assert seen["secret_value_shown"] is False
    # member-add is an invitation: nothing shared until bob accepts it in his projects page
    assert seen["member_before_accept"] == 0 and seen["bob_projects_before_accept"] == 0
    assert seen["invitations_left"] == 0 and seen["pending_after_accept"] == 0
    assert seen["member_kept"] == 1
    assert seen["viewer_can_delete"] == 0 and seen["viewer_can_rerun"] == 0
    assert seen["viewer_can_invite"] == 0 and seen["viewer_can_remove"] == 0
    assert seen["bob_projects"] == 0
    assert "not found" in seen["bob_error"].lower()
    assert seen["loss_points"] == 1
    assert not [e for e in seen["console_errors"] if "Failed to load resource" not in e], seen
    assert (ARTIFACTS / "01-sign-up.png").is_file() and (ARTIFACTS / "06-deployed.png").is_file()
