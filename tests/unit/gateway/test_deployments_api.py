"""The deployments API through the gateway (issue 16) against a real trainer (in process,
real inference servers): list, stop/start, delete, promote and roll back of the live
alias, two replicas observed round-robin, scale to zero and the cold start, and who may
do what (viewers read, editors act, another user gets 404)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.gateway.main import create_app
from services.trainer.models import ModelVersion
from shared.bus.memory import MemoryBus
from shared.internal import register_inproc, unregister_inproc
from shared.secrets import InMemoryVault
from tests.unit.gateway.authstub import AuthStub
from tests.unit.gateway.conftest import Harness, gateway_settings
from tests.unit.trainer.conftest import put_dir, running_trainer, tiny_files  # noqa: F401

pytestmark = pytest.mark.slow

FAST = {"trainer_health_seconds": 0.3, "trainer_health_failures": 2, "trainer_lease_seconds": 3.0}


class Platform:
    def __init__(self, gateway: Harness, trainer: Any, model_dir: Path) -> None:
        self.gateway, self.trainer, self.model_dir = gateway, trainer, model_dir

    def register(self, project_id: str, version: int) -> str:
        key = put_dir(self.trainer.store, self.model_dir, source="aidp://models/t")
        with self.trainer.app.state.runtime.db.session() as session:
            model = ModelVersion(
                project_id=uuid.UUID(project_id),
                run_id=uuid.uuid4(),
                version=version,
                task="text-classification",
                manifest_key=key,
            )
            session.add(model)
            session.commit()
            return str(model.id)

    async def wait(
        self, dep_id: str, headers: dict[str, str], status: str, timeout: float = 120
    ) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            r = await self.gateway.client.get(f"/api/deployments/{dep_id}", headers=headers)
            assert r.status_code == 200, r.text
            if r.json()["status"] == status:
                return dict(r.json())
            assert asyncio.get_running_loop().time() < deadline, (
                f"{dep_id} never {status}: {r.text}"
            )
            await asyncio.sleep(0.2)


@pytest.fixture
async def platform(
    tmp_path: Path,
    auth: AuthStub,
    tiny_files: tuple[Path, Path],  # noqa: F811 - the trainer tests' fixture
) -> AsyncIterator[Platform]:
    (tmp_path / "trainer").mkdir()
    async with running_trainer(tmp_path / "trainer", tiny_files, **FAST) as trainer:
        name = f"trainer-{uuid.uuid4().hex[:8]}"
        register_inproc(name, trainer.app)
        try:
            vault = InMemoryVault()
            settings = gateway_settings(
                tmp_path,
                auth.url,  # type: ignore[attr-defined]
                trainer_url=f"inproc://{name}",
            )
            app = create_app(settings, vault=(vault, vault))
            publisher = MemoryBus("memory://")
            await publisher.connect()
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://gateway", timeout=200
                ) as client:
                    yield Platform(
                        Harness(app, client, auth, vault, publisher), trainer, tiny_files[0]
                    )
            await publisher.close()
        finally:
            unregister_inproc(name)


async def test_deployment_lifecycle_through_the_gateway(platform: Platform) -> None:
    gw = platform.gateway
    _, owner = gw.login("owner@example.com")
    _, stranger = gw.login("stranger@example.com")
    project = await gw.create_project(owner)
    pid = project["id"]
    await gw.add_member(pid, owner, "viewer@example.com", "viewer")
    _, viewer = gw.login("viewer@example.com")
    m1, m2 = platform.register(pid, 1), platform.register(pid, 2)

    # deploy v1 with two replicas; requests alternate between them
    r = await gw.client.post(f"/api/models/{m1}/deploy", json={"replicas": 2}, headers=owner)
    assert r.status_code == 202, r.text
    d1 = r.json()["deployment_id"]
    view = await platform.wait(d1, owner, "running")
    assert view["replicas"] == 2 and view["live"] is True and view["model_version"] == 1
    assert view["project_name"] == project["name"] and view["role"] == "owner"
    replicas = []
    for _ in range(4):
        r = await gw.client.post(
            f"/api/deployments/{d1}/predict", json={"inputs": ["great"]}, headers=owner
        )
        assert r.status_code == 200, r.text
        assert r.headers["x-aidp-cold-start"] == "false"
        replicas.append(r.headers["x-aidp-replica"])
    assert replicas == ["0", "1", "0", "1"]
    # one limit on both sides (shared.contracts): the full batch is served, one more is a
    # 422 from the gateway itself, not a trainer error passed on
    r = await gw.client.post(
        f"/api/deployments/{d1}/predict", json={"inputs": ["ok"] * 256}, headers=owner
    )
    assert r.status_code == 200 and len(r.json()["outputs"]) == 256, r.text
    r = await gw.client.post(
        f"/api/deployments/{d1}/predict", json={"inputs": ["ok"] * 257}, headers=owner
    )
    assert r.status_code == 422 and "inputs" in r.text, r.text

    # the live alias forwards to it
    r = await gw.client.post(
        f"/api/projects/{pid}/endpoint/predict", json={"inputs": ["fine"]}, headers=owner
    )
    assert r.status_code == 200 and r.headers["x-aidp-deployment"] == d1
    assert len(r.json()["outputs"]) == 1

    # who sees what: the viewer reads, may not act; another user sees nothing
    listed = (await gw.client.get("/api/deployments", headers=viewer)).json()
    assert [d["id"] for d in listed] == [d1] and listed[0]["role"] == "viewer"
    assert (await gw.client.get(f"/api/projects/{pid}/endpoint", headers=viewer)).json()[
        "deployment_id"
    ] == d1
    for method, path in (
        ("POST", f"/api/deployments/{d1}/stop"),
        ("POST", f"/api/deployments/{d1}/start"),
        ("POST", f"/api/deployments/{d1}/promote"),
        ("DELETE", f"/api/deployments/{d1}"),
        ("POST", f"/api/projects/{pid}/endpoint/rollback"),
    ):
        assert (await gw.client.request(method, path, headers=viewer)).status_code == 403
        assert (await gw.client.request(method, path, headers=stranger)).status_code == 404
    assert (await gw.client.get("/api/deployments", headers=stranger)).json() == []
    assert (await gw.client.get(f"/api/deployments/{d1}", headers=stranger)).status_code == 404
    r = await gw.client.get("/api/deployments", params={"project_id": pid}, headers=stranger)
    assert r.json() == []
    r = await gw.client.post(
        f"/api/projects/{pid}/endpoint/predict", json={"inputs": ["x"]}, headers=stranger
    )
    assert r.status_code == 404
    # bad input is refused clearly
    r = await gw.client.patch(f"/api/deployments/{d1}", json={"replicas": 0}, headers=owner)
    assert r.status_code == 422
    r = await gw.client.post(f"/api/deployments/{d1}/promote", json={"x": 1}, headers=owner)
    assert r.status_code == 422
    r = await gw.client.post(f"/api/models/{m1}/deploy", json={"replicas": 99}, headers=owner)
    assert r.status_code == 422
    assert (await gw.client.get("/api/deployments/..", headers=owner)).status_code == 404
    assert (
        await gw.client.post(f"/api/deployments/{uuid.uuid4()}/stop", headers=owner)
    ).status_code == 404

    # v2 with a short idle time: once running it is live and v1 stops
    r = await gw.client.post(f"/api/models/{m2}/deploy", json={"idle_timeout_s": 2}, headers=owner)
    d2 = r.json()["deployment_id"]
    await platform.wait(d2, owner, "running")
    stopped = await platform.wait(d1, owner, "stopped")
    assert stopped["reason"] == "superseded" and stopped["live"] is False
    listed = (
        await gw.client.get("/api/deployments", params={"project_id": pid}, headers=owner)
    ).json()
    assert [(d["id"], d["live"]) for d in listed] == [(d2, True), (d1, False)]

    # scale to zero, then a cold start through the alias
    await platform.wait(d2, owner, "idle", timeout=30)
    r = await gw.client.post(
        f"/api/projects/{pid}/endpoint/predict", json={"inputs": ["cold"]}, headers=owner
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-aidp-cold-start"] == "true" and r.headers["x-aidp-deployment"] == d2
    events = platform.trainer.events
    assert [e.payload["deployment_id"] for e in events.of("ModelDeployed")] == [d1, d2]
    # both moves are on the project's status stream: to zero, then started again
    await events.wait_for(lambda: len(events.of("DeploymentScaled")) == 2, what="woken")
    scaled = events.of("DeploymentScaled")
    assert [(e.payload["deployment_id"], e.payload["replicas"]) for e in scaled] == [
        (d2, 0),
        (d2, 1),
    ]
    assert "without a request" in scaled[0].payload["reason"]
    assert all(str(e.project_id) == pid for e in scaled)
    # the idle time is a per-deployment setting (0: never scale to zero)
    r = await gw.client.patch(f"/api/deployments/{d2}", json={"idle_timeout_s": 0}, headers=owner)
    assert r.status_code == 200 and r.json()["idle_timeout_s"] is None
    await asyncio.sleep(3)
    assert (await platform.wait(d2, owner, "running"))["status"] == "running"

    # roll back: v1 starts again, becomes live, v2 stops
    r = await gw.client.post(f"/api/projects/{pid}/endpoint/rollback", headers=owner)
    assert r.status_code == 202, r.text
    await platform.wait(d1, owner, "running")
    await platform.wait(d2, owner, "stopped")
    endpoint = (await gw.client.get(f"/api/projects/{pid}/endpoint", headers=owner)).json()
    assert endpoint["deployment_id"] == d1 and endpoint["deployment"]["live"] is True

    # delete: gone from the list; the alias then points nowhere
    for dep in (d1, d2):
        assert (await gw.client.delete(f"/api/deployments/{dep}", headers=owner)).status_code == 204
        assert (await gw.client.get(f"/api/deployments/{dep}", headers=owner)).status_code == 404
    assert (await gw.client.get("/api/deployments", headers=owner)).json() == []
    r = await gw.client.post(
        f"/api/projects/{pid}/endpoint/predict", json={"inputs": ["x"]}, headers=owner
    )
    assert r.status_code == 409  # no live deployment left
    stops = [
        (e.payload["deployment_id"], e.payload["reason"]) for e in events.of("DeploymentStopped")
    ]
    assert stops == [(d1, "superseded"), (d2, "superseded"), (d1, "deleted"), (d2, "deleted")]
