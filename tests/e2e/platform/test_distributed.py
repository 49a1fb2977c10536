"""Distributed mode, proven end to end with real processes: five services (or two replicas
of each) on RabbitMQ, PostgreSQL and OpenBao; kill -9 of each service in turn; broker
connections dropped and the broker restarted; ten projects at once."""

from __future__ import annotations

import random
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.platform.conftest import shared_env_dir
from tests.support.cluster import Cluster, running_cluster
from tests.support.hf_server import HubServer
from tests.support.infra import management
from tests.support.pipeline import TERMINAL, ApiUser, tiny_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.integration]


def _env(
    tmp_path: Path, amqp_url: str, postgres_url: str, bao: tuple[str, str], hub: HubServer
) -> dict[str, str]:
    return {
        "AIDP_BUS_URL": amqp_url,
        "AIDP_DATABASE_URL": postgres_url,
        "AIDP_VAULT_ADDR": bao[0],
        "AIDP_VAULT_TOKEN": bao[1],
        "AIDP_STORE_DIR": str(tmp_path / "store"),
        "AIDP_ENV_DIR": shared_env_dir(),
        "HF_ENDPOINT": hub.url,
        # Many logins from one address in these tests; the limiter has its own tests.
        "AIDP_LOGIN_LIMIT_PER_ADDRESS": "0",
        "AIDP_LOGIN_LIMIT_PER_EMAIL": "0",
    }


@pytest.fixture
def cluster(
    tmp_path: Path, amqp_url: str, postgres_url: str, bao_server: tuple[str, str], hub: HubServer
) -> Iterator[Cluster]:
    with running_cluster(
        tmp_path / "cluster", _env(tmp_path, amqp_url, postgres_url, bao_server, hub)
    ) as c:
        yield c


def _assert_event_log_sound(user: ApiUser, run: dict[str, Any]) -> list[dict[str, Any]]:
    events = user.events(run["id"])
    seqs = [e["seq"] for e in events]
    ids = [e["event"]["id"] for e in events]
    assert len(ids) == len(set(ids)), "duplicate event ids in the log"
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"gap in seq: {seqs}"
    return events


def _wait(
    user: ApiUser,
    cluster: Cluster,
    run_id: str,
    *,
    timeout: float,
    amqp_url: str | None = None,
    until: set[str] = TERMINAL,
) -> dict[str, Any]:
    """``wait_for_run``, failing with the cluster's diagnosis when the run stalls."""
    try:
        return user.wait_for_run(run_id, timeout=timeout, until=until)
    except TimeoutError as exc:
        pytest.fail(f"{exc}\n{cluster.diagnosis(amqp_url)}")


def _one_model_one_deployment(user: ApiUser, project_id: str, *, deployed: bool) -> None:
    models = user.http.get(f"/api/projects/{project_id}/models").json()
    assert len(models) == 1, models
    if deployed:
        events = user.events(user.http.get(f"/api/projects/{project_id}").json()["current_run_id"])
        deployments = {
            e["event"]["payload"]["deployment_id"]
            for e in events
            if e["event"]["type"] == "ModelDeployed"
        }
        assert len(deployments) == 1, deployments


def test_full_project_on_separate_processes(cluster: Cluster) -> None:
    user = ApiUser(cluster.gateway_url)
    project = user.create_project(tiny_spec())
    run = _wait(user, cluster, project["current_run_id"], timeout=600)
    assert run["status"] == "deployed", cluster.logs()
    events = _assert_event_log_sound(user, run)
    deployment = next(e for e in events if e["event"]["type"] == "ModelDeployed")["event"][
        "payload"
    ]
    r = user.http.post(
        f"/api/deployments/{deployment['deployment_id']}/predict",
        json={"inputs": ["a lovely film"]},
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["outputs"]) == 1


def test_kill_each_service_while_runs_are_in_flight(cluster: Cluster) -> None:
    rng = random.Random(7)
    user = ApiUser(cluster.gateway_url)
    projects = [user.create_project(tiny_spec(max_steps=16)) for _ in range(3)]
    for name in ("fetcher", "provisioner", "trainer", "gateway", "auth"):
        time.sleep(rng.uniform(0.5, 6.0))
        process = cluster.processes[name][0]
        process.kill()
        process.start()
        process.wait_ready()
    for project in projects:
        run = _wait(user, cluster, project["current_run_id"], timeout=900)
        assert run["status"] == "deployed", (run, cluster.logs())
        _assert_event_log_sound(user, run)
        _one_model_one_deployment(user, project["id"], deployed=True)


def _close_vhost_connections(amqp_url: str, *, at_least: int) -> int:
    """Close every connection of this test's vhost through the management API.

    The API lists a new connection only after its next statistics tick (a few seconds),
    so wait until every service's connection shows before closing them all."""
    vhost = httpx.URL(amqp_url).path.lstrip("/")
    api, auth = management(amqp_url)
    deadline = time.monotonic() + 60
    while True:
        connections = httpx.get(f"{api}/vhosts/{vhost}/connections", auth=auth, timeout=10).json()
        if len(connections) >= at_least or time.monotonic() > deadline:
            break
        time.sleep(1)
    for connection in connections:
        httpx.delete(f"{api}/connections/{connection['name']}", auth=auth, timeout=10)
    return len(connections)


def _restart_broker() -> None:
    subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, timeout=120)
    subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True, timeout=120)
    subprocess.run(["rabbitmqctl", "-q", "await_startup"], check=True, timeout=120)


def test_broker_connections_dropped_and_broker_restarted(cluster: Cluster, amqp_url: str) -> None:
    user = ApiUser(cluster.gateway_url)
    projects = [user.create_project(tiny_spec(max_steps=16)) for _ in range(2)]
    time.sleep(3)
    # Connections dropped while artifacts are fetched and nodes provisioned ...
    assert _close_vhost_connections(amqp_url, at_least=5) >= 5  # one per service
    # ... and the broker restarted while the first run trains (progress is flowing).
    _wait(user, cluster, projects[0]["current_run_id"], timeout=600, until={"training", *TERMINAL})
    _restart_broker()
    for project in projects:
        run = _wait(user, cluster, project["current_run_id"], timeout=600, amqp_url=amqp_url)
        assert run["status"] == "deployed", (run, cluster.logs())
        _assert_event_log_sound(user, run)
        _one_model_one_deployment(user, project["id"], deployed=True)


def test_ten_projects_with_two_replicas_of_every_service(
    tmp_path: Path, amqp_url: str, postgres_url: str, bao_server: tuple[str, str], hub: HubServer
) -> None:
    env = _env(tmp_path, amqp_url, postgres_url, bao_server, hub)
    with running_cluster(tmp_path / "cluster2", env, replicas=2) as cluster:
        user = ApiUser(cluster.gateway_url)
        projects: list[dict[str, Any]] = []
        lock = threading.Lock()

        def submit() -> None:
            project = user.create_project(tiny_spec(deploy=False, max_steps=8))
            with lock:
                projects.append(project)

        threads = [threading.Thread(target=submit) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(projects) == 10
        # Clients of the second gateway replica see the same projects.
        other = httpx.get(
            f"{cluster.processes['gateway'][1].url}/api/projects",
            headers={"Authorization": f"Bearer {user.token}"},
            timeout=30,
        )
        assert {p["id"] for p in other.json()} == {p["id"] for p in projects}
        for project in projects:
            run = _wait(user, cluster, project["current_run_id"], timeout=1200, amqp_url=amqp_url)
            assert run["status"] == "succeeded", (run, cluster.logs())
            _assert_event_log_sound(user, run)
            _one_model_one_deployment(user, project["id"], deployed=False)
