"""Event handlers of the trainer service: thin, they call the service logic.

Each handler is a domain function on :class:`shared.service.inbox.Inbox` (claim, apply,
commit, publish in one place): it records the event's effect through
:mod:`services.trainer.service`, and ``then`` does what follows the commit (wake the job
runner, start or stop deployments). Training and deployments run in background tasks. The
trainer consumes its own ``TrainingCompleted``: when it says ``deploy``, the serving side
starts the deployment created with it (training and serving are joined by the event, not a
call).

One handler's transaction at a time: the inputs of a run arrive as separate events (spec,
nodes, artifacts) and each checks whether the others are already recorded; two at once
would each miss the other's uncommitted row and the run would never start. The inbox runs
its units one at a time per service process (its own lock), which is that serialisation.

Events without a run id carry nothing the trainer records: they are claimed and dropped.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlmodel import Session

from services.trainer import service
from services.trainer.app_state import TrainerState
from shared.events import (
    ArtifactsCached,
    ArtifactsFailed,
    Envelope,
    NodesFailed,
    NodesReady,
    NodesReleased,
    NodesReplaced,
    ProjectCreated,
    RunCancelled,
    RunRequested,
    TrainingCompleted,
    ValidationFailed,
    run_owner,
)
from shared.runtime import EventHandler, ServiceRuntime
from shared.service.inbox import Inbox

__all__ = ["build_handlers"]


def build_handlers(runtime: ServiceRuntime, state: TrainerState) -> dict[str, EventHandler]:
    """Event type -> handler; the service queue is bound to exactly these types."""
    inbox = Inbox(runtime)
    record = _Record(runtime)

    async def kick(ready: bool, _envelope: Envelope) -> None:
        if ready:  # a run became ready: the job runner looks for work now
            state.kick()

    async def deploy(deployments: Sequence[uuid.UUID], _envelope: Envelope) -> None:
        if deployments:
            await state.start_deployments(deployments)

    async def released(deployments: Sequence[uuid.UUID] | None, envelope: Envelope) -> None:
        if deployments is not None:
            await state.after_release(envelope.run_id, deployments)

    inbox.handles(ProjectCreated, RunRequested, then=kick)(record.spec)
    inbox.handles(NodesReady, then=kick)(record.nodes)
    inbox.handles(NodesReplaced, then=kick)(record.replacement)
    inbox.handles(ArtifactsCached, then=kick)(record.artifacts)
    inbox.handles(NodesFailed, ArtifactsFailed, ValidationFailed)(record.failed)
    inbox.handles(RunCancelled)(record.cancel)
    inbox.handles(NodesReleased, then=released)(record.released)
    inbox.handles(TrainingCompleted, then=deploy)(record.completed)
    return inbox.handlers()


class _Record:
    """The domain functions: each records one event in the inbox's transaction (``s``) and
    returns what its ``then`` needs. ``stage`` puts the events they cause in the outbox."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self.stage = runtime.stage

    def spec(self, s: Session, event: ProjectCreated | RunRequested, e: Envelope) -> bool:
        """The run's spec: whose secrets it gets is the owner the event names."""
        if e.run_id is None:
            return False
        owner = run_owner(event)
        return service.record_spec(
            s,
            run_id=e.run_id,
            project_id=e.project_id,
            spec=event.spec,
            owner_id=str(owner) if owner is not None else None,
            stage=self.stage,
        )

    def nodes(self, s: Session, event: NodesReady, e: Envelope) -> bool:
        if e.run_id is None:
            return False
        return service.record_nodes(
            s, run_id=e.run_id, project_id=e.project_id, payload=event, stage=self.stage
        )

    def replacement(self, s: Session, event: NodesReplaced, e: Envelope) -> bool:
        if e.run_id is None:
            return False
        return service.record_replacement(
            s, run_id=e.run_id, project_id=e.project_id, payload=event, stage=self.stage
        )

    def artifacts(self, s: Session, event: ArtifactsCached, e: Envelope) -> bool:
        if e.run_id is None:
            return False
        return service.record_artifacts(
            s, run_id=e.run_id, project_id=e.project_id, payload=event, stage=self.stage
        )

    def failed(
        self, s: Session, event: NodesFailed | ArtifactsFailed | ValidationFailed, e: Envelope
    ) -> None:
        if e.run_id is not None:
            service.fail_inputs(
                s, run_id=e.run_id, project_id=e.project_id, payload=event, stage=self.stage
            )

    def cancel(self, s: Session, _event: RunCancelled, e: Envelope) -> None:
        if e.run_id is not None:
            service.cancel_run(s, run_id=e.run_id, project_id=e.project_id, stage=self.stage)

    def released(self, s: Session, event: NodesReleased, e: Envelope) -> list[uuid.UUID] | None:
        """Nodes released: the deployments on them (to stop); None without a run."""
        if e.run_id is None:
            return None
        return service.release_nodes(s, run_id=e.run_id, nodes=event.nodes)

    def completed(self, s: Session, event: TrainingCompleted, e: Envelope) -> list[uuid.UUID]:
        """Training completed with ``deploy``: its deployment, to start (once: the inbox
        drops a redelivery, and a deployment already watched here is left alone)."""
        if e.run_id is None:
            return []
        return service.deployments_to_start(s, run_id=e.run_id, payload=event)
