"""The run sandbox on a default ``aidp up``: a registered user's hostile script against the
real platform — its OpenBao, databases, gateway, another user's deployed model server.

Alice deploys a model; Mallory, an ordinary account, runs tests/support/hostile.py. Every
escape must fail, Mallory's run must still finish, and Alice's endpoint must still answer.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.platform.conftest import embedded_platform
from tests.support.hf_server import HubServer
from tests.support.hostile import host_files, hostile_spec, parse_report, victim_dir
from tests.support.pipeline import ApiUser, tiny_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def platform(tmp_path: Path, hub: HubServer) -> Iterator[tuple[str, Path]]:
    data_dir = tmp_path / "data"
    with embedded_platform(data_dir, hub, tmp_path / "aidp.log") as url:
        yield url, data_dir


def platform_pids(data_dir: Path) -> list[int]:
    """Processes of the platform (the ``aidp up`` process and its local OpenBao)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if f"AIDP_DATA_DIR={data_dir}".encode() in environ or str(data_dir).encode() in cmdline:
            if b"bwrap" not in cmdline:
                found.append(int(entry))
    return found


def run_logs(user: ApiUser, run_id: str) -> list[str]:
    return [
        line
        for e in user.events(run_id)
        if e["event"]["type"] == "TrainingLog"
        for line in e["event"]["payload"]["lines"]
    ]


def targets_for(url: str, data_dir: Path, tmp_path: Path) -> dict[str, Any]:
    ports = json.loads((data_dir / "openbao" / "ports.json").read_text())
    bao_port = int(ports["port"])
    gateway_port = int(url.rsplit(":", 1)[1])
    other_workspaces = host_files(data_dir / "workspaces", "*/aidp-run-*/model/*")
    sockets = [str(p) for p in (data_dir / "workspaces").glob("*/aidp-run-*/serve/server.sock")]
    assert other_workspaces and sockets, "alice's run left no workspace or model server"
    return {
        "read": [
            str(data_dir / "openbao" / "init.json"),
            str(data_dir / "openbao" / "tokens.json"),
            *host_files(data_dir, "*.db"),
            *other_workspaces[:3],
        ],
        "list": [str(data_dir), str(data_dir / "workspaces"), str(data_dir / "store")],
        "tcp": [
            ["127.0.0.1", gateway_port],
            ["127.0.0.1", bao_port],
            ["127.0.0.1", 5432],
            ["127.0.0.1", 5672],
            ["127.0.0.1", 6379],
        ],
        "unix": sockets,
        "write": [str(data_dir / "escaped.txt"), str(tmp_path / "escaped.txt")],
        "pids": platform_pids(data_dir),
        "checkpoint_victims": [str(victim_dir(tmp_path))],
    }


def test_hostile_tenant_on_the_embedded_platform(
    platform: tuple[str, Path], tmp_path: Path
) -> None:
    url, data_dir = platform
    alice = ApiUser(url)
    deployed = alice.wait_for_run(alice.create_project(tiny_spec())["current_run_id"], timeout=900)
    assert deployed["status"] == "deployed", deployed
    endpoint = next(
        e["event"]["payload"]["deployment_id"]
        for e in alice.events(deployed["id"])
        if e["event"]["type"] == "ModelDeployed"
    )

    targets = targets_for(url, data_dir, tmp_path)
    spec = {**tiny_spec(deploy=False), **hostile_spec(targets)}
    mallory = ApiUser(url)
    run = mallory.wait_for_run(mallory.create_project(spec)["current_run_id"], timeout=600)
    logs = run_logs(mallory, run["id"])
    assert run["status"] == "succeeded", (run, logs[-30:])

    report = parse_report(logs)
    assert report["escapes"] == [], report["escapes"]
    assert len(report["attempts"]) >= 15
    assert report["uid"] != 0
    for path in targets["write"]:
        assert not Path(path).exists(), path
    victim = Path(targets["checkpoint_victims"][0])
    assert (victim / "precious.txt").read_text() == "must survive"
    assert any("refused" in line for line in logs)

    # alice's deployment is untouched and still answers through the platform
    r = alice.http.post(f"/api/deployments/{endpoint}/predict", json={"inputs": ["lovely"]})
    assert r.status_code == 200, r.text
    # a run id is not a key to someone else's data: mallory still cannot see alice's run
    assert mallory.http.get(f"/api/runs/{deployed['id']}").status_code == 404
    assert uuid.UUID(run["id"])
