"""Event handlers of the provisioner service: thin, they record intent and start jobs.

Each handler is a domain function on :class:`shared.service.inbox.Inbox` (claim, apply,
commit, publish in one place); ``then`` schedules the provisioning, replacement or release
job after the commit. Both take the :class:`Provisioner` first; :func:`build_handlers`
binds it.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable
from typing import TypeVar

from sqlmodel import Session, select

from services.provisioner.models import RunNodes
from services.provisioner.replacement import record_loss
from services.provisioner.service import Provisioner
from shared.db import run_sync
from shared.events import (
    DatasetValidated,
    DeploymentFailed,
    DeploymentStopped,
    Envelope,
    NodeLost,
    ProjectCreated,
    ProjectDeleted,
    RunCancelled,
    RunRequested,
    TrainingCompleted,
    TrainingFailed,
    TrainingStarted,
    ValidationFailed,
    run_owner,
)
from shared.runtime import EventHandler, ServiceRuntime
from shared.service.clock import utcnow
from shared.service.inbox import Inbox
from shared.spec import ProjectSpec

__all__ = ["build_handlers"]

R = TypeVar("R")


def build_handlers(runtime: ServiceRuntime, provisioner: Provisioner) -> dict[str, EventHandler]:
    """Event type -> handler; the service queue is bound to exactly these types."""
    inbox = Inbox(runtime)

    def bind(fn: Callable[..., R]) -> Callable[..., R]:
        """``fn`` with the provisioner as its first argument, under ``fn``'s name (the
        inbox names its bus handler after the domain function)."""
        return functools.update_wrapper(functools.partial(fn, provisioner), fn)

    inbox.handles(ProjectCreated, RunRequested, then=bind(start_provisioning))(bind(record_run))
    inbox.handles(DatasetValidated, ValidationFailed, then=bind(start_provisioning))(
        bind(record_preflight)
    )
    inbox.handles(RunCancelled, then=bind(start_releases))(bind(release_cancelled))
    inbox.handles(TrainingFailed, then=bind(start_releases))(bind(release_failed))
    inbox.handles(ProjectDeleted, then=bind(start_releases))(bind(project_deleted))
    inbox.handles(TrainingStarted)(bind(training_started))
    inbox.handles(TrainingCompleted, then=bind(start_releases))(bind(training_completed))
    inbox.handles(DeploymentFailed, DeploymentStopped, then=bind(start_releases))(bind(undeployed))
    inbox.handles(NodeLost, then=bind(start_replacement))(bind(node_lost))
    return inbox.handlers()


# -- after the commit: start the jobs ------------------------------------------------------


async def start_provisioning(prov: Provisioner, state: str | None, envelope: Envelope) -> None:
    """A new run is provisioned at once, or once its pre-flight check is settled."""
    run_id = envelope.run_id
    if run_id is None or state is None:
        return
    if state == "requested" or await run_sync(prov.settle_preflight, run_id):
        prov.schedule(run_id, "provision")


async def start_releases(prov: Provisioner, run_ids: list[uuid.UUID], _envelope: Envelope) -> None:
    for run_id in run_ids:
        prov.schedule(run_id, "release")


async def start_replacement(prov: Provisioner, start: bool, envelope: Envelope) -> None:
    if start and envelope.run_id is not None:
        prov.schedule(envelope.run_id, "replace")


# -- domain functions: one database unit each (shared.service.inbox) -----------------------


def record_run(
    prov: Provisioner, s: Session, event: ProjectCreated | RunRequested, envelope: Envelope
) -> str | None:
    """The recorded run's state; None when the run was known already."""
    owner = run_owner(event)  # None (an older producer): record_run keeps the previous one
    row = prov.record_run(s, envelope=envelope, spec=event.spec, owner_id=owner)
    return None if row is None else row.state


def record_preflight(
    prov: Provisioner, s: Session, event: DatasetValidated | ValidationFailed, envelope: Envelope
) -> str | None:
    """Keep the check's outcome; ``validating`` so that ``start_provisioning`` settles it."""
    if envelope.run_id is None:
        return None
    reason = event.reason if isinstance(event, ValidationFailed) else None
    prov.record_preflight(s, run_id=envelope.run_id, passed=reason is None, reason=reason)
    return "validating"


def release_cancelled(
    prov: Provisioner, s: Session, _event: RunCancelled, envelope: Envelope
) -> list[uuid.UUID]:
    """Release the cancelled run's nodes."""
    return _request_releases(prov, s, envelope, _own(envelope), "cancelled")


def release_failed(
    prov: Provisioner, s: Session, _event: TrainingFailed, envelope: Envelope
) -> list[uuid.UUID]:
    """Release the nodes of a run whose training failed."""
    return _request_releases(prov, s, envelope, _own(envelope), "failed")


def project_deleted(
    prov: Provisioner, s: Session, event: ProjectDeleted, envelope: Envelope
) -> list[uuid.UUID]:
    """Release the nodes of every run of the project (the event's and those known here)."""
    known = s.exec(select(RunNodes.run_id).where(RunNodes.project_id == envelope.project_id))
    runs = sorted({*known.all(), *event.run_ids})
    return _request_releases(prov, s, envelope, runs, "project_deleted")


def training_started(
    _prov: Provisioner, s: Session, _event: TrainingStarted, envelope: Envelope
) -> None:
    """The run's nodes are busy training (autostop leaves them alone)."""
    row = s.get(RunNodes, envelope.run_id) if envelope.run_id else None
    if row is not None:
        row.training, row.last_active_at = True, utcnow()
        s.add(row)


def training_completed(
    prov: Provisioner, s: Session, event: TrainingCompleted, envelope: Envelope
) -> list[uuid.UUID]:
    """Release the nodes, unless the trainer now serves the model from them."""
    row = s.get(RunNodes, envelope.run_id) if envelope.run_id else None
    deploys = event.deploy  # what the trainer did; None: a trainer older than the field
    if deploys is None:
        deploys = row is not None and ProjectSpec.model_validate(row.spec).deploy.enabled
    if not deploys:
        return _request_releases(prov, s, envelope, _own(envelope), "completed")
    if row is not None:
        row.training, row.serving, row.last_active_at = False, True, utcnow()
        s.add(row)
    return []


def undeployed(
    prov: Provisioner, s: Session, event: DeploymentFailed | DeploymentStopped, envelope: Envelope
) -> list[uuid.UUID]:
    """A deployment serving from its run's nodes failed or stopped: nothing needs them."""
    if isinstance(event, DeploymentStopped) and not event.on_run_nodes:
        return []
    row = s.get(RunNodes, envelope.run_id) if envelope.run_id else None
    if row is None or not row.serving:
        return []
    return _request_releases(prov, s, envelope, _own(envelope), "undeployed")


def node_lost(prov: Provisioner, s: Session, event: NodeLost, envelope: Envelope) -> bool:
    """The trainer lost a node: whether a replacement starts (or the run fails past
    its budget)."""
    row = s.get(RunNodes, envelope.run_id) if envelope.run_id else None
    return row is not None and record_loss(prov, s, row, event, cause=envelope)


def _own(envelope: Envelope) -> list[uuid.UUID]:
    return [envelope.run_id] if envelope.run_id else []


def _request_releases(
    prov: Provisioner, s: Session, envelope: Envelope, run_ids: Iterable[uuid.UUID], reason: str
) -> list[uuid.UUID]:
    """Mark the runs' nodes for release; the runs whose release job starts."""
    released: list[uuid.UUID] = []
    for run_id in run_ids:
        # locked: a replica's job moving the run on at the same moment must not overwrite
        # the release (the state is how the replica holding the run learns of it)
        row = s.get(RunNodes, run_id, with_for_update=True)
        if row is not None and prov.request_release(s, row, reason=reason, cause=envelope):
            released.append(run_id)
    return released
