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


_PORT_TAKEN = "address already in use"
_PORT_TRIES = 3


@contextmanager
def embedded_platform(data_dir: Path, hub: HubServer, log_path: Path) -> Iterator[str]:
    """``aidp up`` in a subprocess on ``data_dir``; yields its URL once ready, then SIGTERM.

    The port is picked free, then bound by the platform a few seconds later: in between,
    an outgoing connection (the platform's own, to its OpenBao) may take it as its local
    port. A start that fails for that alone is tried again on another port."""
    for attempt in range(1, _PORT_TRIES + 1):
        port = free_port()
        start = log_path.stat().st_size if log_path.exists() else 0
        proc = _start_up(data_dir, hub, log_path, port)
        url = f"http://127.0.0.1:{port}"
        try:
            if wait_http_ready(f"{url}/readyz", timeout=120, proc=proc, interval=0.5):
                yield url
                return
            output = log_path.read_bytes()[start:].decode(errors="replace")
            if _PORT_TAKEN not in output or proc.poll() is None or attempt == _PORT_TRIES:
                raise RuntimeError(output[-4000:])
        finally:
            _stop(proc, data_dir)


def _start_up(data_dir: Path, hub: HubServer, log_path: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIDP_")}
    env.update(
        AIDP_DATA_DIR=str(data_dir),
        AIDP_PORT=str(port),
        AIDP_ENV_DIR=shared_env_dir(),
        HF_ENDPOINT=hub.url,
        PYTHONUNBUFFERED="1",
    )
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen[bytes], data_dir: Path) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
    kill_processes_under(data_dir)  # its model servers run in sessions of their own
