"""Fixtures for the provisioner's integration tests (real uv, Ansible, sshd, HTTP)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.provisioner.settings import ProvisionerSettings

#: Built environments are shared by every test run on this machine (torch is built once).
SHARED_ENV_DIR = Path(
    os.environ.get("AIDP_TEST_ENV_DIR", Path.home() / ".cache" / "aidp-test-envs")
)


@pytest.fixture
def shared_env_dir() -> Path:
    SHARED_ENV_DIR.mkdir(parents=True, exist_ok=True)
    return SHARED_ENV_DIR


@pytest.fixture
def real_settings(tmp_path: Path, shared_env_dir: Path) -> ProvisionerSettings:
    return ProvisionerSettings(
        data_dir=tmp_path / "data",
        env_dir=shared_env_dir,
        retry_delay=0.2,
        reaper_interval=3600,
        bus_url="memory://provisioner-it",
    )
