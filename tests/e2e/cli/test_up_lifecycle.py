"""``aidp up`` and its model servers (issue 16 item 2): a SIGTERM stops the platform and
every process of its data dir with it; the next ``aidp up`` on that data dir starts the
deployment that was serving again, and it answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.e2e.cli.harness import ROOT, Platform, _publish_fixtures, _wait_healthy, tiny_spec
from tests.support.hf_server import HubServer
from tests.support.infra import free_port
from tests.support.pipeline import ApiUser
from tests.support.processes import kill_processes_under

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

PASSWORD = "Correct-horse-42!"


def processes_of(root: Path) -> list[str]:
    """Processes (not this test's) whose command line or working directory is under
    ``root``: ``pid: command``."""
    needle = str(root)
    mine = {os.getpid(), os.getppid()}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            cwd = ""
        if needle in cmdline or cwd.startswith(needle):
            found.append(f"{entry.name}: {cmdline[:300]}")
    return found


@contextmanager
def aidp_up(
    work: Path, hub: HubServer, data_dir: Path, port: int
) -> Iterator[subprocess.Popen[bytes]]:
    url = f"http://127.0.0.1:{port}"
    log_path = work / f"aidp-up-{time.monotonic_ns()}.log"
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "AIDP_DATA_DIR": str(data_dir),
    }
    env.pop("AIDP_CONFIG", None)
    platform = Platform(url=url, data_dir=data_dir, log_path=log_path, hub=hub)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_healthy(url, proc, platform, 180)
            proc.log_tail = platform.log_tail  # type: ignore[attr-defined]
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def stop(proc: subprocess.Popen[bytes], sig: int) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(90)
    except subprocess.TimeoutExpired:
        pytest.fail("aidp up did not stop within 90 s of the signal")


def no_processes_left(data_dir: Path) -> None:
    left: list[str] = []
    for _ in range(20):  # what was killed may take a moment to be reaped
        left = processes_of(data_dir)
        if not left:
            return
        time.sleep(0.25)
    pytest.fail("processes of the data dir outlived aidp up:\n" + "\n".join(left))


def test_sigterm_stops_model_servers_and_the_next_up_restarts_them(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with HubServer() as hub:
        _publish_fixtures(hub, tmp_path / "fixtures")
        port = free_port()
        try:
            with aidp_up(tmp_path, hub, data_dir, port) as up:
                user = ApiUser(f"http://127.0.0.1:{port}", "owner@example.com", PASSWORD)
                project = user.create_project(tiny_spec("lifecycle", max_steps=8))
                run = user.wait_for_run(project["current_run_id"], timeout=600)
                assert run["status"] == "deployed", f"{run}\n{up.log_tail()}"  # type: ignore[attr-defined]
                dep_id = run["deployment_id"]
                r = user.http.post(f"/api/deployments/{dep_id}/predict", json={"inputs": ["good"]})
                assert r.status_code == 200, r.text
                assert processes_of(data_dir), "the model server should run under the data dir"
                assert stop(up, signal.SIGTERM) == 0, up.log_tail()  # type: ignore[attr-defined]
            no_processes_left(data_dir)

            with aidp_up(tmp_path, hub, data_dir, port) as up:
                user = ApiUser(f"http://127.0.0.1:{port}", "owner@example.com", PASSWORD)
                deadline = time.monotonic() + 180
                status = ""
                while time.monotonic() < deadline:
                    status = user.http.get(f"/api/deployments/{dep_id}").json()["status"]
                    if status == "running":
                        break
                    time.sleep(1)
                assert status == "running", up.log_tail()  # type: ignore[attr-defined]
                r = user.http.post(
                    f"/api/projects/{project['id']}/endpoint/predict", json={"inputs": ["bad"]}
                )
                assert r.status_code == 200, r.text
                assert r.headers["x-aidp-deployment"] == dep_id
                assert stop(up, signal.SIGINT) == 0, up.log_tail()  # type: ignore[attr-defined]
            no_processes_left(data_dir)
        finally:
            kill_processes_under(data_dir)
