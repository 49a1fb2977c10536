"""Fixtures for the CLI unit tests: an isolated config file per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """AIDP_CONFIG pointed at a fresh path; AIDP_SERVER/AIDP_TOKEN unset."""
    path = tmp_path / "home" / ".aidp" / "config"
    monkeypatch.setenv("AIDP_CONFIG", str(path))
    monkeypatch.delenv("AIDP_SERVER", raising=False)
    monkeypatch.delenv("AIDP_TOKEN", raising=False)
    yield path
