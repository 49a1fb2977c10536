"""The web UI's own checks, run by `make test`: TypeScript types and the vitest unit tests
(event folding, spec building and validation)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.e2e.cli.harness import ROOT

pytestmark = [pytest.mark.slow]

WEB = ROOT / "web"


@pytest.fixture(scope="module")
def npx() -> str:
    path = shutil.which("npx")
    if path is None or not (WEB / "node_modules").is_dir():
        pytest.fail("needs node and web/node_modules (scripts/bootstrap.sh installs them)")
    return path


@pytest.mark.parametrize("command", [["tsc", "--noEmit"], ["vitest", "run"]])
def test_web_checks(npx: str, command: list[str]) -> None:
    proc = subprocess.run(
        [npx, "--no-install", *command], cwd=WEB, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
