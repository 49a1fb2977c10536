"""Fixtures for whole-platform tests: a mirror with a tiny project, the shared env cache."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.hf_server import HubServer
from tests.support.infra import free_port, wait_http_ready
from tests.support.pipeline import publish_tiny_project
from tests.support.processes import kill_processes_under

REPO = Path(__file__).resolve().parents[3]


def shared_env_dir() -> str:
    """Built PyTorch environments are shared by every test (built once per machine)."""
    return os.environ.get("AIDP_TEST_ENV_DIR", str(Path.home() / ".cache" / "aidp-test-envs"))


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubServer]:
    with HubServer() as server:
        publish_tiny_project(server, tmp_path / "mirror-src")
        yield server


@contextmanager
def embedded_platform(data_dir: Path, hub: HubServer, log_path: Path) -> Iterator[str]:
    """``aidp up`` in a subprocess on ``data_dir``; yields its URL once ready, then SIGTERM."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIDP_")}
    env.update(
        AIDP_DATA_DIR=str(data_dir),
        AIDP_PORT=str(port),
        AIDP_ENV_DIR=shared_env_dir(),
        HF_ENDPOINT=hub.url,
        PYTHONUNBUFFERED="1",
    )
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_http_ready(f"{url}/readyz", timeout=120, proc=proc, interval=0.5):
            raise RuntimeError(log_path.read_text()[-4000:])
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        kill_processes_under(data_dir)  # its model servers run in sessions of their own
