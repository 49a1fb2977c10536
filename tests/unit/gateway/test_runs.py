"""Runs: status derived from events, re-runs, cancel, events and logs pages."""

from __future__ import annotations

import uuid
from typing import Any

from shared.bus.memory import MemoryBus
from shared.events import (
    Envelope,
    EnvInfo,
    FetchProgress,
    NodeInfo,
    NodesReady,
    TrainingCompleted,
    TrainingLog,
    TrainingProgress,
    TrainingStarted,
    new_event,
)
from tests.unit.gateway.conftest import SPEC, Harness, wait_until


async def _run(harness: Harness, headers: dict[str, str], run_id: str) -> dict[str, Any]:
    return (await harness.client.get(f"/api/runs/{run_id}", headers=headers)).json()  # type: ignore[no-any-return]


async def test_status_follows_events(harness: Harness) -> None:
    _, headers = harness.login()
    project = await harness.create_project(headers)
    pid, rid = uuid.UUID(project["id"]), uuid.UUID(project["current_run_id"])

    async def emit(payload: Any) -> None:
        await harness.publish(new_event(payload, project_id=pid, run_id=rid))

    # As in the platform, the fetcher's first event follows the stored ProjectCreated (the
    # relay publishes it asynchronously; emitting earlier would race it on a loaded machine).
    await wait_until(lambda: _events(harness, headers, rid, 1))
    await emit(FetchProgress(source="hf://x", bytes_done=1, bytes_total=2))
    await wait_until(lambda: _run(harness, headers, str(rid)))
    run = await wait_until(lambda: _status_is(harness, headers, rid, "preparing"))
    assert run["preparing_at"] and not run["training_at"]
    await emit(
        NodesReady(
            nodes=[NodeInfo(name="n0", address="127.0.0.1", workdir="/tmp")],
            env=EnvInfo(lock_hash="h", python="3.11", torch_version="2"),
        )
    )
    await emit(TrainingStarted(world_size=1, nodes=["n0"]))
    await emit(TrainingProgress(step=5, total_steps=10, loss=0.5))
    run = await wait_until(lambda: _progress_step(harness, headers, rid, 5))
    assert run["status"] == "training" and run["progress"]["loss"] == 0.5
    await emit(TrainingLog(node="n0", lines=["hello", "world"]))
    await emit(TrainingCompleted(model_version="v1", digest="d" * 64))
    run = await wait_until(lambda: _status_is(harness, headers, rid, "succeeded"))
    assert run["model_version"] == "v1" and run["finished_at"]
    # a late event never moves a finished run back
    await emit(TrainingProgress(step=6))
    events = await wait_until(lambda: _events(harness, headers, rid, 8))
    assert (await _run(harness, headers, str(rid)))["status"] == "succeeded"

    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, 9))  # ProjectCreated + 7 published, gapless
    assert events[0]["event"]["type"] == "ProjectCreated"
    page = (
        await harness.client.get(f"/api/runs/{rid}/events?after=3&limit=2", headers=headers)
    ).json()
    assert [e["seq"] for e in page["events"]] == [4, 5] and page["next_after"] == 5

    logs = (await harness.client.get(f"/api/runs/{rid}/logs", headers=headers)).json()
    assert [line["text"] for line in logs["lines"]] == ["hello", "world"]
    assert logs["lines"][0]["node"] == "n0"

    # cancelling a finished run conflicts; a new run starts
    assert (
        await harness.client.post(f"/api/runs/{rid}/cancel", headers=headers)
    ).status_code == 409
    r = await harness.client.post(
        f"/api/projects/{pid}/runs", json={"spec": {**SPEC, "name": "again"}}, headers=headers
    )
    assert r.status_code == 201 and r.json()["number"] == 2 and r.json()["status"] == "queued"
    project = (await harness.client.get(f"/api/projects/{pid}", headers=headers)).json()
    assert project["current_run_id"] == r.json()["id"] and project["status"] == "queued"


async def _status_is(harness: Harness, headers: dict[str, str], rid: uuid.UUID, status: str) -> Any:
    run = await _run(harness, headers, str(rid))
    return run if run.get("status") == status else None


async def _progress_step(
    harness: Harness, headers: dict[str, str], rid: uuid.UUID, step: int
) -> Any:
    run = await _run(harness, headers, str(rid))
    return run if (run.get("progress") or {}).get("step") == step else None


async def _events(harness: Harness, headers: dict[str, str], rid: uuid.UUID, n: int) -> Any:
    page = (await harness.client.get(f"/api/runs/{rid}/events", headers=headers)).json()
    return page["events"] if len(page["events"]) >= n else None


async def test_rerun_conflicts_while_active_and_cancel_emits(harness: Harness) -> None:
    seen: list[Envelope] = []
    bus = MemoryBus("memory://")
    await bus.connect()

    async def capture(envelope: Envelope) -> None:
        seen.append(envelope)

    await bus.subscribe("capture", ["RunRequested", "RunCancelled"], capture)
    user_id, headers = harness.login()
    project = await harness.create_project(headers)
    pid, rid = project["id"], project["current_run_id"]
    assert (
        await harness.client.post(f"/api/projects/{pid}/runs", headers=headers)
    ).status_code == 409
    r = await harness.client.post(f"/api/runs/{rid}/cancel", headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = await harness.client.post(f"/api/projects/{pid}/runs", headers=headers)
    assert r.status_code == 201
    await wait_until(lambda: len(seen) == 2)
    cancelled, requested = seen
    assert cancelled.type == "RunCancelled" and str(cancelled.run_id) == rid
    assert cancelled.payload["by"] == str(user_id)
    assert requested.type == "RunRequested" and requested.payload["run_number"] == 2
    assert requested.payload["spec"]["model"] == SPEC["model"]
    assert requested.payload["owner_id"] == requested.payload["requested_by"] == str(user_id)
    runs = (await harness.client.get(f"/api/projects/{pid}/runs", headers=headers)).json()
    assert [r["number"] for r in runs] == [2, 1]
    await bus.close()


async def test_unknown_run_is_404(harness: Harness) -> None:
    _, headers = harness.login()
    for path in ("", "/events", "/logs"):
        r = await harness.client.get(f"/api/runs/{uuid.uuid4()}{path}", headers=headers)
        assert r.status_code == 404
    r = await harness.client.get("/api/runs/not-a-uuid", headers=headers)
    assert r.status_code == 422
