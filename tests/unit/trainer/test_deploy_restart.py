"""Inference servers: a crashed one is restarted (or reported); one replica watches each."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.trainer.models import Deployment, ModelVersion
from services.trainer.serving.manager import DeploymentManager
from tests.support.service_auth import as_service
from tests.unit.trainer.conftest import Harness, put_dir, running_trainer

pytestmark = pytest.mark.slow

FAST_HEALTH = {
    "trainer_health_seconds": 0.3,
    "trainer_health_failures": 2,
    "trainer_lease_seconds": 3.0,
}


def register_tiny_model(trainer: Harness) -> uuid.UUID:
    """The tiny BERT as a registered text-classification model (no training needed)."""
    key = put_dir(trainer.store, trainer.tmp / "tiny-model", source="aidp://models/t")
    runtime = trainer.app.state.runtime
    with runtime.db.session() as session:
        model = ModelVersion(
            project_id=uuid.uuid4(),
            run_id=uuid.uuid4(),
            version=1,
            task="text-classification",
            manifest_key=key,
        )
        session.add(model)
        session.commit()
        return model.id


def deployment(trainer: Harness, dep_id: uuid.UUID) -> Deployment:
    with trainer.app.state.runtime.db.session() as session:
        dep = session.get(Deployment, dep_id)
        assert dep is not None
        return dep


@pytest.fixture
async def served(
    tmp_path: Path, tiny_files: tuple[Path, Path], request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Harness, httpx.AsyncClient, uuid.UUID]]:
    """A trainer with the tiny model deployed and running; yields (harness, client, dep id)."""
    overrides: dict[str, Any] = {**FAST_HEALTH, **getattr(request, "param", {})}
    model_dir = tmp_path / "tiny-model"
    model_dir.mkdir()
    for path in tiny_files[0].iterdir():
        (model_dir / path.name).write_bytes(path.read_bytes())
    async with running_trainer(tmp_path, tiny_files, **overrides) as trainer:
        model_id = register_tiny_model(trainer)
        transport = httpx.ASGITransport(app=trainer.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", auth=as_service("trainer")
        ) as client:
            r = await client.post(f"/internal/models/{model_id}/deploy")
            assert r.status_code == 202, r.text
            dep_id = uuid.UUID(r.json()["deployment_id"])
            await trainer.events.wait_for(
                lambda: deployment(trainer, dep_id).status == "running",
                timeout=120,
                what="deployment running",
            )
            yield trainer, client, dep_id
            await client.delete(f"/internal/deployments/{dep_id}")


async def predict(client: httpx.AsyncClient, dep_id: uuid.UUID) -> httpx.Response:
    return await client.post(
        f"/internal/deployments/{dep_id}/predict", json={"inputs": ["a good movie", "awful"]}
    )


def kill_server(dep: Deployment) -> None:
    assert dep.pid
    os.killpg(dep.pid, signal.SIGKILL)


async def test_crashed_server_is_restarted_and_predicts_again(
    served: tuple[Harness, httpx.AsyncClient, uuid.UUID],
) -> None:
    trainer, client, dep_id = served
    assert (await predict(client, dep_id)).status_code == 200
    first = deployment(trainer, dep_id)
    assert first.owner == trainer.app.state.trainer.deployments.instance  # this replica's lease
    kill_server(first)
    await trainer.events.wait_for(
        lambda: (
            (d := deployment(trainer, dep_id)).restarts == 1
            and d.status == "running"
            and d.pid != first.pid
        ),
        timeout=120,
        what="restarted server",
    )
    r = await predict(client, dep_id)
    assert r.status_code == 200, r.text
    assert len(r.json()["outputs"]) == 2
    assert not trainer.events.of("DeploymentFailed")


@pytest.mark.parametrize("served", [{"trainer_serving_restarts": 0}], indirect=True)
async def test_server_crashing_past_the_restart_budget_is_reported(
    served: tuple[Harness, httpx.AsyncClient, uuid.UUID],
) -> None:
    trainer, client, dep_id = served
    kill_server(deployment(trainer, dep_id))
    failed = await trainer.events.wait_for(
        lambda: trainer.events.of("DeploymentFailed"), timeout=60, what="DeploymentFailed"
    )
    assert failed[0].payload["deployment_id"] == str(dep_id)
    assert "stopped answering" in failed[0].payload["reason"]
    assert deployment(trainer, dep_id).status == "failed"
    assert (await predict(client, dep_id)).status_code == 409


# replicas leave their servers running when they stop (distributed behaviour)
@pytest.mark.parametrize("served", [{"trainer_stop_servers_on_shutdown": False}], indirect=True)
async def test_only_the_lease_holder_watches_and_another_replica_adopts(
    served: tuple[Harness, httpx.AsyncClient, uuid.UUID],
) -> None:
    trainer, client, dep_id = served
    state = trainer.app.state.trainer
    other = DeploymentManager(state.runtime, state.settings, state.jobs.store)  # a 2nd replica
    try:
        assert not await asyncio.to_thread(other.leases.claim, dep_id)  # the lease is held
        await other.resume_all()
        await asyncio.sleep(0.5)
        assert deployment(trainer, dep_id).owner == state.deployments.instance
        # the first replica stops watching (it shuts down): the other adopts the live server
        pid = deployment(trainer, dep_id).pid
        state.deploy_supervisor.cancel()
        await state.deployments.close()
        await other.resume_all()
        await trainer.events.wait_for(
            lambda: deployment(trainer, dep_id).owner == other.instance, what="adoption"
        )
        await asyncio.sleep(1.0)  # a few health checks: healthy, so no restart
        dep = deployment(trainer, dep_id)
        assert dep.status == "running" and dep.pid == pid and dep.restarts == 0
        # the adopting replica reaches the sandboxed server (a Unix socket: no TCP port)
        assert dep.port == 0
        answer = await other.predict(dep_id, {"inputs": ["nice"]})
        assert len(answer["outputs"]) == 1
    finally:
        await other.stop(dep_id)
        await other.close()
