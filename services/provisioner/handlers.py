"""Event handlers of the provisioner service: thin, they record intent and start jobs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlmodel import select

from services.provisioner.models import RunNodes
from services.provisioner.replacement import record_loss
from services.provisioner.service import Provisioner
from shared.db import run_sync
from shared.events import (
    DatasetValidated,
    DeploymentStopped,
    Envelope,
    EventPayload,
    NodeLost,
    ProjectCreated,
    ProjectDeleted,
    RunRequested,
    TrainingCompleted,
    ValidationFailed,
    parse_payload,
)
from shared.outbox import claim_inbox
from shared.runtime import EventHandler, ServiceRuntime
from shared.spec import ProjectSpec

__all__ = ["build_handlers"]

P = TypeVar("P", bound=EventPayload)


def _typed(payload: EventPayload, cls: type[P]) -> P:
    if not isinstance(payload, cls):
        raise TypeError(f"expected {cls.__name__}, got {type(payload).__name__}")
    return payload


def build_handlers(runtime: ServiceRuntime, provisioner: Provisioner) -> dict[str, EventHandler]:
    """Event type -> handler; the service queue is bound to exactly these types."""

    async def on_run(envelope: Envelope) -> None:
        payload = parse_payload(envelope)
        owner: uuid.UUID | None
        if isinstance(payload, ProjectCreated):
            spec, owner = payload.spec, payload.owner_id
        else:
            run = _typed(payload, RunRequested)
            spec, owner = run.spec, run.requested_by
        prov = provisioner
        row = await run_sync(_record_run, prov, envelope, spec, owner)
        if row is None or envelope.run_id is None:
            return
        if row.state == "requested" or await run_sync(prov.settle_preflight, envelope.run_id):
            prov.schedule(envelope.run_id, "provision")

    async def on_preflight(envelope: Envelope) -> None:
        payload = parse_payload(envelope)
        if envelope.run_id is None:
            return
        passed = isinstance(payload, DatasetValidated)
        reason = _typed(payload, ValidationFailed).reason if not passed else None
        if not await run_sync(_record_preflight, provisioner, envelope, passed, reason):
            return
        if await run_sync(provisioner.settle_preflight, envelope.run_id):
            provisioner.schedule(envelope.run_id, "provision")

    async def release_runs(envelope: Envelope, run_ids: list[uuid.UUID], reason: str) -> None:
        for run_id in await run_sync(_request_releases, provisioner, envelope, run_ids, reason):
            provisioner.schedule(run_id, "release")

    async def on_cancelled(envelope: Envelope) -> None:
        parse_payload(envelope)
        await release_runs(envelope, [envelope.run_id] if envelope.run_id else [], "cancelled")

    async def on_project_deleted(envelope: Envelope) -> None:
        payload = _typed(parse_payload(envelope), ProjectDeleted)
        known = await run_sync(_project_runs, runtime, envelope.project_id)
        await release_runs(envelope, sorted({*known, *payload.run_ids}), "project_deleted")

    async def on_training_started(envelope: Envelope) -> None:
        parse_payload(envelope)
        await run_sync(_mark_training, runtime, envelope)

    async def on_training_completed(envelope: Envelope) -> None:
        payload = _typed(parse_payload(envelope), TrainingCompleted)
        deploys = payload.deploy  # what the trainer did; None: a trainer older than the field
        if deploys is None:
            deploys = await run_sync(_deploys, runtime, envelope.run_id)
        if not deploys:
            await release_runs(envelope, [envelope.run_id] if envelope.run_id else [], "completed")
            return
        await run_sync(_mark_serving, runtime, envelope)  # the trainer serves from the node

    async def on_training_failed(envelope: Envelope) -> None:
        parse_payload(envelope)
        await release_runs(envelope, [envelope.run_id] if envelope.run_id else [], "failed")

    async def on_deployment_failed(envelope: Envelope) -> None:
        parse_payload(envelope)
        if await run_sync(_serving, runtime, envelope.run_id):
            await release_runs(envelope, [envelope.run_id] if envelope.run_id else [], "undeployed")

    async def on_deployment_stopped(envelope: Envelope) -> None:
        """A deployment serving from its run's nodes stopped: nothing needs them now."""
        payload = _typed(parse_payload(envelope), DeploymentStopped)
        if not payload.on_run_nodes:
            return
        if await run_sync(_serving, runtime, envelope.run_id):
            await release_runs(envelope, [envelope.run_id] if envelope.run_id else [], "undeployed")

    async def on_node_lost(envelope: Envelope) -> None:
        """The trainer lost a node: replace it (or fail the run past the budget)."""
        payload = _typed(parse_payload(envelope), NodeLost)
        if envelope.run_id is None:
            return
        start = await run_sync(_record_loss, provisioner, envelope, payload)
        if start is None:
            return  # handled already
        runtime.published()
        if start:
            provisioner.schedule(envelope.run_id, "replace")

    return {
        "NodeLost": on_node_lost,
        "DeploymentStopped": on_deployment_stopped,
        "ProjectCreated": on_run,
        "RunRequested": on_run,
        "DatasetValidated": on_preflight,
        "ValidationFailed": on_preflight,
        "RunCancelled": on_cancelled,
        "ProjectDeleted": on_project_deleted,
        "TrainingStarted": on_training_started,
        "TrainingCompleted": on_training_completed,
        "TrainingFailed": on_training_failed,
        "DeploymentFailed": on_deployment_failed,
    }


# -- the handlers' database work: each a unit of work in one session, run off the loop ------


def _record_run(
    prov: Provisioner, envelope: Envelope, spec: dict[str, Any], owner: uuid.UUID | None
) -> RunNodes | None:
    """The run's row as recorded; None when the event was handled already."""
    with prov.runtime.db.session() as s:
        if not claim_inbox(s, envelope, service=prov.runtime.name):
            return None
        row = prov.record_run(s, envelope=envelope, spec=spec, owner_id=owner)
        s.commit()
    return row


def _record_preflight(
    prov: Provisioner, envelope: Envelope, passed: bool, reason: str | None
) -> bool:
    """False when the event was handled already."""
    assert envelope.run_id is not None
    with prov.runtime.db.session() as s:
        if not claim_inbox(s, envelope, service=prov.runtime.name):
            return False
        prov.record_preflight(s, run_id=envelope.run_id, passed=passed, reason=reason)
        s.commit()
    return True


def _request_releases(
    prov: Provisioner, envelope: Envelope, run_ids: list[uuid.UUID], reason: str
) -> list[uuid.UUID]:
    """The runs whose release this event starts (none when it was handled already)."""
    released: list[uuid.UUID] = []
    with prov.runtime.db.session() as s:
        if not claim_inbox(s, envelope, service=prov.runtime.name):
            return []
        for run_id in run_ids:
            row = s.get(RunNodes, run_id)
            if row is not None and prov.request_release(s, row, reason=reason, cause=envelope):
                released.append(run_id)
        s.commit()
    return released


def _project_runs(runtime: ServiceRuntime, project_id: uuid.UUID | None) -> list[uuid.UUID]:
    with runtime.db.session() as s:
        return list(s.exec(select(RunNodes.run_id).where(RunNodes.project_id == project_id)).all())


def _mark_training(runtime: ServiceRuntime, envelope: Envelope) -> None:
    with runtime.db.session() as s:
        if not claim_inbox(s, envelope, service=runtime.name):
            return
        row = s.get(RunNodes, envelope.run_id) if envelope.run_id else None
        if row is not None:
            row.training = True
            row.last_active_at = datetime.now(UTC)
            s.add(row)
        s.commit()


def _deploys(runtime: ServiceRuntime, run_id: uuid.UUID | None) -> bool:
    """Whether the run's spec deploys the trained model (from its nodes): for a
    ``TrainingCompleted`` without ``deploy`` (an older trainer)."""
    with runtime.db.session() as s:
        row = s.get(RunNodes, run_id) if run_id else None
        return row is not None and ProjectSpec.model_validate(row.spec).deploy.enabled


def _mark_serving(runtime: ServiceRuntime, envelope: Envelope) -> None:
    with runtime.db.session() as s:
        if not claim_inbox(s, envelope, service=runtime.name):
            return
        row = s.get(RunNodes, envelope.run_id)
        if row is not None:
            row.training, row.serving = False, True
            row.last_active_at = datetime.now(UTC)
            s.add(row)
        s.commit()


def _serving(runtime: ServiceRuntime, run_id: uuid.UUID | None) -> bool:
    with runtime.db.session() as s:
        row = s.get(RunNodes, run_id) if run_id else None
        return row is not None and row.serving


def _record_loss(prov: Provisioner, envelope: Envelope, payload: NodeLost) -> bool | None:
    """Whether a replacement starts; None when the event was handled already."""
    with prov.runtime.db.session() as s:
        if not claim_inbox(s, envelope, service=prov.runtime.name):
            return None
        row = s.get(RunNodes, envelope.run_id)
        start = row is not None and record_loss(prov, s, row, payload, cause=envelope)
        s.commit()
    return start
