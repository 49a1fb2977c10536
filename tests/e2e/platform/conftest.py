"""Fixtures for whole-platform tests: a mirror with a tiny project, the shared env cache."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.hf_server import HubServer
from tests.support.pipeline import publish_tiny_project


def shared_env_dir() -> str:
    """Built PyTorch environments are shared by every test (built once per machine)."""
    return os.environ.get("AIDP_TEST_ENV_DIR", str(Path.home() / ".cache" / "aidp-test-envs"))


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubServer]:
    with HubServer() as server:
        publish_tiny_project(server, tmp_path / "mirror-src")
        yield server
