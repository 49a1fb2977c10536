"""Fixtures for whole-platform tests: a mirror with a tiny project, the shared env cache."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.hf_server import HubServer
from tests.support.infra import free_port
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
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log_path.read_text()[-4000:])
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        kill_processes_under(data_dir)  # its model servers run in sessions of their own
