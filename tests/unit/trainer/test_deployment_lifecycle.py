"""Deployments as first-class objects (issue 16), on the trainer's internal API with real
inference servers: replicas with round-robin, stop/start, the live alias with promote,
supersede and roll back, servers stopped at shutdown and started again at the next start.
Scale to zero and the cold start: tests/unit/gateway/test_deployments_api.py."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.trainer.models import Deployment, ModelVersion
from tests.support.service_auth import as_service
from tests.unit.trainer.conftest import Harness, put_dir, running_trainer

pytestmark = pytest.mark.slow

FAST = {"trainer_health_seconds": 0.3, "trainer_health_failures": 2, "trainer_lease_seconds": 3.0}


def register(trainer: Harness, project_id: uuid.UUID, version: int) -> uuid.UUID:
    """The tiny BERT as version ``version`` of a project's model (no training needed)."""
    key = put_dir(trainer.store, trainer.tiny_model, source="aidp://models/t")  # type: ignore[attr-defined]
    with trainer.app.state.runtime.db.session() as session:
        model = ModelVersion(
            project_id=project_id,
            run_id=uuid.uuid4(),
            version=version,
            task="text-classification",
            manifest_key=key,
        )
        session.add(model)
        session.commit()
        return model.id


def row(trainer: Harness, dep_id: str) -> Deployment | None:
    with trainer.app.state.runtime.db.session() as session:
        return session.get(Deployment, uuid.UUID(dep_id))


def alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Api:
    def __init__(self, trainer: Harness, client: httpx.AsyncClient) -> None:
        self.trainer, self.client = trainer, client

    async def deploy(self, model_id: uuid.UUID, **body: Any) -> str:
        r = await self.client.post(f"/internal/models/{model_id}/deploy", json=body or None)
        assert r.status_code == 202, r.text
        return str(r.json()["deployment_id"])

    async def get(self, dep_id: str) -> dict[str, Any]:
        r = await self.client.get(f"/internal/deployments/{dep_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def wait_status(self, dep_id: str, status: str, timeout: float = 120) -> dict[str, Any]:
        await self.trainer.events.wait_for(
            lambda: (d := row(self.trainer, dep_id)) is not None and d.status == status,
            timeout=timeout,
            what=f"deployment {dep_id[:8]} {status}",
        )
        return await self.get(dep_id)

    async def predict(self, dep_id: str) -> httpx.Response:
        return await self.client.post(
            f"/internal/deployments/{dep_id}/predict", json={"inputs": ["a good movie"]}
        )


@pytest.fixture
async def api(tmp_path: Path, tiny_files: tuple[Path, Path]) -> AsyncIterator[Api]:
    async with running_trainer(tmp_path, tiny_files, **FAST) as trainer:
        trainer.tiny_model = tiny_files[0]  # type: ignore[attr-defined]
        transport = httpx.ASGITransport(app=trainer.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", auth=as_service("trainer"), timeout=200
        ) as client:
            yield Api(trainer, client)


async def test_two_replicas_round_robin_stop_and_start(api: Api) -> None:
    project = uuid.uuid4()
    dep_id = await api.deploy(register(api.trainer, project, 1), replicas=2)
    view = await api.wait_status(dep_id, "running")
    assert view["replicas"] == 2 and view["replicas_up"] == 2 and view["live"] is True
    procs = row(api.trainer, dep_id).procs  # type: ignore[union-attr]
    pids = [p["pid"] for p in procs or []]
    assert len(set(pids)) == 2 and all(alive(p) for p in pids)

    answered = []
    for _ in range(4):
        r = await api.predict(dep_id)
        assert r.status_code == 200, r.text
        assert r.headers["x-aidp-cold-start"] == "false"
        answered.append(r.headers["x-aidp-replica"])
    assert answered == ["0", "1", "0", "1"]  # round-robin over both servers

    listed = (
        await api.client.get("/internal/deployments", params={"project_id": [project]})
    ).json()
    assert [d["id"] for d in listed] == [dep_id] and listed[0]["model_version"] == 1
    other = (
        await api.client.get("/internal/deployments", params={"project_id": [uuid.uuid4()]})
    ).json()
    assert other == []

    r = await api.client.post(f"/internal/deployments/{dep_id}/stop", headers={"X-Aidp-User": "u1"})
    assert r.status_code == 200 and r.json()["status"] == "stopped"
    await api.trainer.events.wait_for(lambda: not any(alive(p) for p in pids), what="servers gone")
    stopped = api.trainer.events.of("DeploymentStopped")
    assert [
        (e.payload["deployment_id"], e.payload["reason"], e.payload["by"]) for e in stopped
    ] == [(dep_id, "stopped", "u1")]
    assert stopped[0].project_id == project
    assert (await api.predict(dep_id)).status_code == 409
    # stopping again changes nothing and emits nothing
    assert (await api.client.post(f"/internal/deployments/{dep_id}/stop")).status_code == 200
    assert len(api.trainer.events.of("DeploymentStopped")) == 1

    r = await api.client.post(f"/internal/deployments/{dep_id}/start")
    assert r.status_code == 202 and r.json()["status"] == "starting"
    await api.wait_status(dep_id, "running")
    assert (await api.predict(dep_id)).status_code == 200

    r = await api.client.delete(f"/internal/deployments/{dep_id}")
    assert r.status_code == 200
    assert (await api.client.get(f"/internal/deployments/{dep_id}")).status_code == 404
    assert (await api.client.post(f"/internal/deployments/{uuid.uuid4()}/stop")).status_code == 404


async def test_new_version_supersedes_promote_and_roll_back(api: Api) -> None:
    project = uuid.uuid4()
    v1 = await api.deploy(register(api.trainer, project, 1))
    await api.wait_status(v1, "running")
    endpoint = (await api.client.get(f"/internal/projects/{project}/endpoint")).json()
    assert endpoint["deployment_id"] == v1 and endpoint["previous_deployment_id"] is None
    r = await api.client.post(f"/internal/projects/{project}/endpoint/rollback")
    assert r.status_code == 409  # nothing to roll back to

    # a new version: once running it becomes live and the old server stops
    v2 = await api.deploy(register(api.trainer, project, 2))
    await api.wait_status(v2, "running")
    old = await api.wait_status(v1, "stopped")
    assert old["reason"] == "superseded" and old["live"] is False
    endpoint = (await api.client.get(f"/internal/projects/{project}/endpoint")).json()
    assert endpoint["deployment_id"] == v2 and endpoint["previous_deployment_id"] == v1
    assert endpoint["deployment"]["model_version"] == 2

    # keep_previous: a third one runs beside v2, which stays live until promoted
    v3 = await api.deploy(register(api.trainer, project, 3), keep_previous=True, promote=False)
    await api.wait_status(v3, "running")
    assert (await api.get(v2))["status"] == "running" and (await api.get(v2))["live"] is True
    r = await api.client.post(f"/internal/deployments/{v3}/promote", json={"keep_previous": True})
    assert r.status_code == 202 and r.json()["live"] is True
    assert (await api.get(v2))["status"] == "running"  # kept

    # roll back: v2 is live again (it was running: at once), v3 is stopped
    r = await api.client.post(f"/internal/projects/{project}/endpoint/rollback")
    assert r.status_code == 202, r.text
    assert r.json()["deployment_id"] == v2
    await api.wait_status(v3, "stopped")

    # roll back to a stopped deployment: it starts again, then takes over
    r = await api.client.post(f"/internal/projects/{project}/endpoint/rollback")
    assert r.status_code == 202 and r.json()["deployment_id"] == v2  # not yet: v1 starts
    await api.wait_status(v1, "running")
    await api.wait_status(v2, "stopped")
    endpoint = (await api.client.get(f"/internal/projects/{project}/endpoint")).json()
    assert endpoint["deployment_id"] == v1
    promoted = [
        (e.payload["deployment_id"], e.payload["rollback"])
        for e in api.trainer.events.of("DeploymentPromoted")
    ]
    assert promoted == [(v1, False), (v2, False), (v3, False), (v2, True), (v1, True)]
    deployed = [e.payload["deployment_id"] for e in api.trainer.events.of("ModelDeployed")]
    assert deployed.count(v1) == 2  # started again from stopped


async def test_servers_stop_with_the_trainer_and_start_again(
    tmp_path: Path, tiny_files: tuple[Path, Path]
) -> None:
    project = uuid.uuid4()
    async with running_trainer(tmp_path, tiny_files, **FAST) as trainer:
        trainer.tiny_model = tiny_files[0]  # type: ignore[attr-defined]
        transport = httpx.ASGITransport(app=trainer.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", auth=as_service("trainer"), timeout=200
        ) as client:
            api = Api(trainer, client)
            serving = await api.deploy(register(trainer, project, 1))
            await api.wait_status(serving, "running")
            stopped = await api.deploy(register(trainer, project, 2), keep_previous=True)
            await api.wait_status(stopped, "running")
            await client.post(f"/internal/deployments/{stopped}/stop")
            pid = row(trainer, serving).pid  # type: ignore[union-attr]
            assert pid and alive(pid)
    assert not alive(pid)  # embedded: the trainer's stop stops its servers
    assert row(trainer, serving).status == "waking"  # type: ignore[union-attr]

    async with running_trainer(
        tmp_path, tiny_files, vault=trainer.vault, events=trainer.events, **FAST
    ) as again:
        transport = httpx.ASGITransport(app=again.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", auth=as_service("trainer"), timeout=200
        ) as client:
            api = Api(again, client)
            await api.wait_status(serving, "running")
            assert (await api.predict(serving)).status_code == 200
            assert (await api.get(stopped))["status"] == "stopped"  # stays stopped
            new_pid = row(again, serving).pid  # type: ignore[union-attr]
            await client.delete(f"/internal/deployments/{serving}")
            assert new_pid and not alive(new_pid)


def test_migration_matches_the_models(tmp_path: Path) -> None:
    """trainer_0005's columns and table are the models' (nullability, types)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import MetaData

    from services.trainer import models
    from services.trainer.main import MIGRATIONS
    from shared.db import Database

    tables = ("trainer_deployments", "trainer_project_endpoints")
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    db.migrate(MIGRATIONS, service="trainer")
    ours = MetaData()
    for table in models.SQLModel.metadata.tables.values():
        if table.name in tables:
            table.to_metadata(ours)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), ours)
    db.dispose()
    assert [d for d in diff if any(t in repr(d) for t in tables)] == []
