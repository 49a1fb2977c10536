"""One running platform for the CLI end-to-end tests, and a way to run the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.cli.harness import ROOT, Platform, running_platform


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("platform")) as running:
        yield running


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass
class Cli:
    """Runs ``aidp`` as a subprocess with its own config file (one user per instance)."""

    config: Path
    server: str

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        timeout: float = 60,
        env: dict[str, str] | None = None,
    ) -> Result:
        base = {k: v for k, v in os.environ.items() if k not in ("AIDP_TOKEN", "AIDP_SERVER")}
        env = {**base, "AIDP_CONFIG": str(self.config), "COLUMNS": "200", **(env or {})}
        proc = subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            cwd=ROOT,
            env=env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli_for(platform: Platform, tmp_path: Path):  # type: ignore[no-untyped-def]
    """``cli_for("name")``: a CLI whose config lives in its own file."""

    def make(name: str) -> Cli:
        return Cli(config=tmp_path / name / "config", server=platform.url)

    return make
