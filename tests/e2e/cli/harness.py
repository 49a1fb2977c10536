"""The whole platform for end-to-end tests: ``aidp up`` in a subprocess, fed by a local
HuggingFace-compatible hub that serves a tiny BERT and a small sentiment dataset.

Shared by ``tests/e2e/cli`` and ``tests/e2e/web``. Everything is real: the CLI and the
browser talk HTTP and WebSocket to the gateway, which runs every service in one process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.hf_server import HubServer
from tests.support.infra import free_port
from tests.support.processes import kill_processes_under

__all__ = ["MODEL_REPO", "DATASET_REPO", "Platform", "running_platform", "tiny_spec"]

ROOT = Path(__file__).resolve().parents[3]
MODEL_REPO = "e2e/tiny-bert"
DATASET_REPO = "e2e/sentiment"


def tiny_spec(name: str, *, deploy: bool = True, max_steps: int = 24) -> dict[str, object]:
    """A project the tiny model trains in seconds on one CPU."""
    return {
        "name": name,
        "model": f"hf://{MODEL_REPO}@main",
        "dataset": f"hf://datasets/{DATASET_REPO}@main",
        "task": "text-classification",
        "train": {
            "args": {"epochs": 3, "batch_size": 8, "learning_rate": 0.003, "max_steps": max_steps},
            "checkpoint_every": 8,
        },
        "resources": {"provider": "local", "nodes": 1, "accelerator": "cpu"},
        "deploy": {"enabled": deploy},
    }


@dataclass
class Platform:
    url: str
    data_dir: Path
    log_path: Path
    hub: HubServer

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _publish_fixtures(hub: HubServer, work: Path) -> None:
    from tests.unit.trainer.factories import build_tiny_bert, write_sentiment_csv

    model_dir = build_tiny_bert(work / "tiny-bert")
    hub.add_repo_dir(MODEL_REPO, model_dir)
    data = write_sentiment_csv(work / "data" / "train.csv", rows=96)
    hub.commit(DATASET_REPO, {"train.csv": data.read_bytes()}, repo_type="dataset")


def _wait_healthy(
    url: str, proc: subprocess.Popen[bytes], platform: Platform, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"aidp up exited with {proc.returncode}:\n{platform.log_tail()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"aidp up not ready after {timeout:.0f}s:\n{platform.log_tail()}")


@contextmanager
def running_platform(
    work: Path,
    *,
    timeout: float = 120,
    extra_env: dict[str, str] | None = None,
    port: int | None = None,
) -> Iterator[Platform]:
    """Start the hub and ``aidp up`` (its own data dir and port, ``extra_env`` added to its
    environment); stop both afterwards."""
    work.mkdir(parents=True, exist_ok=True)
    with HubServer() as hub:
        _publish_fixtures(hub, work / "fixtures")
        port = port or free_port()
        url = f"http://127.0.0.1:{port}"
        data_dir = work / "data"
        log_path = work / "aidp-up.log"
        env = {
            **os.environ,
            "HF_ENDPOINT": hub.url,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "AIDP_DATA_DIR": str(data_dir),
            **(extra_env or {}),
        }
        env.pop("AIDP_CONFIG", None)
        platform = Platform(url=url, data_dir=data_dir, log_path=log_path, hub=hub)
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cli.main",
                    "up",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--data-dir",
                    str(data_dir),
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                _wait_healthy(url, proc, platform, timeout)
                yield platform
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
                    try:
                        proc.wait(20)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait(10)
                kill_processes_under(data_dir)  # model servers run in sessions of their own
