"""The web UI's API types (web/src/api-types.ts) are generated from the gateway's OpenAPI
document: regenerate them into a temporary file and fail when they differ from the
committed ones (a route or a model changed without ``npm run gen:api``)."""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds both apps' documents, then runs node

ROOT = Path(__file__).resolve().parents[3]
WEB = ROOT / "web"
COMMITTED = WEB / "src" / "api-types.ts"
GENERATOR = WEB / "node_modules" / ".bin" / "openapi-typescript"


def test_committed_api_types_match_the_openapi_document(tmp_path: Path) -> None:
    assert COMMITTED.is_file(), "web/src/api-types.ts is missing: run `cd web && npm run gen:api`"
    assert GENERATOR.exists(), "openapi-typescript is not installed: run scripts/bootstrap.sh"
    assert shutil.which("node"), "node is needed (scripts/bootstrap.sh installs it)"
    document, generated = tmp_path / "openapi.json", tmp_path / "api-types.ts"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIDP_")}
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "openapi_json.py"), str(document)],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=300,
    )
    proc = subprocess.run(
        [str(GENERATOR), str(document), "-o", str(generated)],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    want, have = generated.read_text(), COMMITTED.read_text()
    if want != have:
        diff = "".join(
            list(
                difflib.unified_diff(
                    have.splitlines(keepends=True),
                    want.splitlines(keepends=True),
                    "web/src/api-types.ts (committed)",
                    "generated from the code",
                )
            )[:60]
        )
        pytest.fail(
            "web/src/api-types.ts is out of date with the gateway's OpenAPI document: "
            f"run `cd web && npm run gen:api` and commit the result.\n{diff}"
        )
