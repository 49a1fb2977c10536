"""Event envelopes for tests, built with the real shared.events classes."""

from __future__ import annotations

import uuid
from typing import Any

from shared.events import (
    ArtifactRef,
    ArtifactsCached,
    EnvInfo,
    EventPayload,
    FetchProgress,
    ModelDeployed,
    NodeInfo,
    NodesReady,
    ProjectCreated,
    ProvisioningProgress,
    TrainingCompleted,
    TrainingLog,
    TrainingProgress,
    TrainingStarted,
    new_event,
)

PROJECT = uuid.uuid4()
RUN = uuid.uuid4()
DEPLOYMENT = uuid.uuid4()


def env(payload: EventPayload, run_id: uuid.UUID = RUN) -> dict[str, Any]:
    """A JSON envelope as the WebSocket delivers it."""
    return new_event(payload, project_id=PROJECT, run_id=run_id).model_dump(mode="json")


def happy_run(*, deploy: bool = True) -> list[dict[str, Any]]:
    """Every event of a successful run, in order."""
    spec = {"name": "demo", "model": "hf://a/b", "deploy": {"enabled": deploy}}
    events = [
        env(ProjectCreated(owner_id=uuid.uuid4(), spec=spec)),
        env(FetchProgress(source="hf://a/b@main", bytes_done=500_000, bytes_total=1_000_000)),
        env(ProvisioningProgress(stage="packages", message="pip install", percent=40)),
        env(FetchProgress(source="hf://a/b", bytes_done=1_000_000, bytes_total=1_000_000)),
        env(
            ArtifactsCached(
                artifacts=[
                    ArtifactRef(
                        kind="model",
                        source="hf://a/b",
                        resolved_revision="a" * 40,
                        digest="d" * 64,
                        size_bytes=1_000_000,
                        cache_key="k",
                    )
                ]
            )
        ),
        env(
            NodesReady(
                nodes=[NodeInfo(name="local-0", address="127.0.0.1", workdir="/w")],
                env=EnvInfo(lock_hash="h", python="3.11", torch_version="2.13.0"),
            )
        ),
        env(TrainingStarted(world_size=1, nodes=["local-0"])),
        env(
            TrainingProgress(
                step=10, total_steps=20, loss=0.9, samples_per_sec=12.5, eta_seconds=30
            )
        ),
        env(TrainingLog(node="local-0", lines=["\x1b[1mepoch 1 done\x1b[0m"])),
        env(TrainingProgress(step=20, total_steps=20, loss=0.4, eta_seconds=0)),
        env(TrainingCompleted(model_version="v1", metrics={"accuracy": 0.91}, digest="e" * 64)),
    ]
    if deploy:
        events.append(
            env(
                ModelDeployed(
                    deployment_id=DEPLOYMENT, endpoint=f"/api/deployments/{DEPLOYMENT}/predict"
                )
            )
        )
    return events
