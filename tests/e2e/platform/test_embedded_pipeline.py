"""The whole platform in one process (``aidp up``), a real project end to end:
fetch → provision → train → deploy → predict over real HTTP; then a restart that keeps
every project, secret and cached artifact."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.secrets.local import LocalOpenBao
from tests.e2e.platform.conftest import embedded_platform
from tests.support.hf_server import HubServer
from tests.support.pipeline import ApiUser, tiny_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def embedded(tmp_path: Path, hub: HubServer) -> Iterator[str]:
    with embedded_platform(tmp_path / "data", hub, tmp_path / "aidp.log") as url:
        yield url


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

    # The public API document lists the auth service's real routes and their statuses.
    document = alice.http.get("/api/openapi.json").json()
    assert "/api/auth/{path}" not in document["paths"]
    login = document["paths"]["/api/auth/login"]["post"]
    assert {"401", "422", "429"} <= set(login["responses"])

    # Another user sees none of it.
    mallory = ApiUser(embedded)
    assert mallory.http.get(f"/api/projects/{project['id']}").status_code == 404
    assert (
        mallory.http.post(
            f"/api/deployments/{deployment_id}/predict", json={"inputs": ["x"]}
        ).status_code
        == 404
    )


def test_restart_keeps_projects_secrets_and_artifacts(tmp_path: Path, hub: HubServer) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "aidp.log"
    with embedded_platform(data_dir, hub, log) as url:
        alice = ApiUser(url)
        assert (
            alice.http.put("/api/secrets/HF_TOKEN", json={"value": "hf_kept_secret_1"}).status_code
            == 204
        )
        project = alice.create_project(tiny_spec(deploy=False, max_steps=4))
        run = alice.wait_for_run(project["current_run_id"], timeout=600)
        assert run["status"] == "succeeded", log.read_text()[-4000:]
        artifacts = alice.http.get("/api/artifacts").json()
        models = alice.http.get(f"/api/projects/{project['id']}/models").json()
        assert artifacts and len(models) == 1

    # A clean stop (SIGTERM) shut every service down, and the OpenBao it started with them.
    assert "auth stopped" in log.read_text()
    assert not LocalOpenBao(data_dir / "openbao").is_running()

    with embedded_platform(data_dir, hub, log) as url:
        again = ApiUser(url, email=alice.email)  # same account: register answers 409, login works
        assert again.http.get(f"/api/projects/{project['id']}").json()["name"] == project["name"]
        assert again.run(run["id"])["status"] == "succeeded"
        secrets = again.http.get("/api/secrets")
        assert secrets.json() == {"names": ["HF_TOKEN"]} and "hf_kept_secret_1" not in secrets.text
        assert {a["digest"] for a in again.http.get("/api/artifacts").json()} == {
            a["digest"] for a in artifacts
        }
        assert [
            m["id"] for m in again.http.get(f"/api/projects/{project['id']}/models").json()
        ] == [models[0]["id"]]
        # The kept model still decrypts: its download streams from the encrypted store.
        download = again.http.get(f"/api/models/{models[0]['id']}/download")
        assert download.status_code == 200 and len(download.content) > 1000
