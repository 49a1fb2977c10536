"""The whole platform in one process (``python -m services``), a real project end to end:
fetch → provision → train → deploy → predict, over real HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.platform.conftest import shared_env_dir
from tests.support.hf_server import HubServer
from tests.support.infra import free_port
from tests.support.pipeline import ApiUser, tiny_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def embedded(tmp_path: Path, hub: HubServer) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIDP_")}
    env.update(
        AIDP_DATA_DIR=str(tmp_path / "data"),
        AIDP_PORT=str(port),
        AIDP_ENV_DIR=shared_env_dir(),
        HF_ENDPOINT=hub.url,
        PYTHONUNBUFFERED="1",
    )
    log = (tmp_path / "aidp.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "services"],
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
                raise RuntimeError((tmp_path / "aidp.log").read_text()[-4000:])
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_project_runs_to_deployed_and_predicts(embedded: str, tmp_path: Path) -> None:
    alice = ApiUser(embedded)
    project = alice.create_project(tiny_spec())
    run = alice.wait_for_run(project["current_run_id"], timeout=900)
    log_tail = (tmp_path / "aidp.log").read_text()[-6000:]
    assert run["status"] == "deployed", log_tail

    types = [e["event"]["type"] for e in alice.events(run["id"])]
    for expected in (
        "ProjectCreated",
        "NodesReady",
        "ArtifactsCached",
        "TrainingStarted",
        "TrainingProgress",
        "TrainingCompleted",
        "ModelDeployed",
    ):
        assert expected in types, (expected, types)
    steps = [
        e["event"]["payload"]["step"]
        for e in alice.events(run["id"])
        if e["event"]["type"] == "TrainingProgress"
    ]
    assert steps == sorted(steps) and steps[-1] > 0

    deployed = next(e for e in alice.events(run["id"]) if e["event"]["type"] == "ModelDeployed")
    deployment_id = deployed["event"]["payload"]["deployment_id"]
    r = alice.http.post(
        f"/api/deployments/{deployment_id}/predict",
        json={"inputs": ["a great and lovely film", "an awful dreadful plot"]},
    )
    assert r.status_code == 200, r.text
    outputs = r.json()["outputs"]
    assert len(outputs) == 2 and all("label" in o for o in outputs)

    # Another user sees none of it.
    mallory = ApiUser(embedded)
    assert mallory.http.get(f"/api/projects/{project['id']}").status_code == 404
    assert (
        mallory.http.post(
            f"/api/deployments/{deployment_id}/predict", json={"inputs": ["x"]}
        ).status_code
        == 404
    )
