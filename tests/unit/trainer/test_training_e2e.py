"""End to end on the memory bus: NodesReady + ArtifactsCached → train → deploy → predict."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.support.service_auth import as_service
from tests.unit.trainer.conftest import Harness, text_spec

pytestmark = pytest.mark.slow


async def test_text_classification_trains_deploys_and_predicts(trainer: Harness) -> None:
    spec = text_spec(args={"epochs": 3}, checkpoint_every=5)
    spec["deploy"] = {"enabled": True}
    run_id = await trainer.start_run(spec=spec, order="artifacts-nodes-spec")
    ev = trainer.events

    started = await ev.first("TrainingStarted", run_id)
    assert started.payload["world_size"] == 1 and started.payload["attempt"] == 1
    completed = await ev.first("TrainingCompleted", run_id, timeout=120)
    steps = [e.payload["step"] for e in ev.of("TrainingProgress", run_id)]
    assert steps == sorted(steps) and steps[-1] == 24, steps
    progress = ev.of("TrainingProgress", run_id)[-1].payload
    assert progress["total_steps"] == 24 and progress["samples_per_sec"] > 0
    assert progress["loss"] is not None and progress["eta_seconds"] == 0

    assert completed.payload["deploy"] is True  # the serving side starts it from the event
    deployed = await ev.first("ModelDeployed", run_id, timeout=120)
    dep_id = deployed.payload["deployment_id"]
    assert deployed.payload["endpoint"] == f"/api/deployments/{dep_id}/predict"

    # a redelivered TrainingCompleted starts nothing again: same servers, one ModelDeployed
    manager = trainer.app.state.trainer.deployments
    before = await asyncio.to_thread(manager.get, uuid.UUID(dep_id))
    await trainer.bus.publish(completed)
    await ev.wait_for(lambda: len(ev.of("TrainingCompleted", run_id)) == 2, what="redelivery")
    await asyncio.sleep(1.5)
    after = await asyncio.to_thread(manager.get, uuid.UUID(dep_id))
    assert (after.status, after.procs, after.restarts) == ("running", before.procs, 0)
    assert len(ev.of("ModelDeployed", run_id)) == 1

    transport = httpx.ASGITransport(app=trainer.app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://trainer", auth=as_service("trainer")
    ) as client:
        models = (await client.get(f"/internal/projects/{completed.project_id}/models")).json()
        assert len(models) == 1 and models[0]["version"] == 1
        assert models[0]["lineage"]["model"]["revision"] == "a" * 40
        assert models[0]["lineage"]["env_lock_hash"] == "c" * 64
        assert models[0]["id"] == completed.payload["model_version"]
        r = await client.post(
            f"/internal/deployments/{dep_id}/predict",
            json={"inputs": ["a good movie", "an awful film", "superb"]},
        )
        assert r.status_code == 200, r.text
        outputs = r.json()["outputs"]
        assert len(outputs) == 3 and all(o["label"] in ("pos", "neg") for o in outputs)
        assert (await client.get(f"/internal/deployments/{dep_id}")).json()["status"] == "running"
        r = await client.delete(f"/internal/deployments/{dep_id}")
        assert r.json()["status"] == "stopped"
        r = await client.post(f"/internal/deployments/{dep_id}/predict", json={"inputs": ["x"]})
        assert r.status_code == 404  # deleted (a stopped one answers 409)
