"""The trainer's reactions to events: record inputs, join them, fail, cancel, clean up.

Every function runs inside a handler's transaction (``session``) after the inbox claim;
long work is only *recorded* here and done by the job runner / deployment manager.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlmodel import Session, col, select

from services.trainer.models import Deployment, Run
from services.trainer.runs import (
    FINISHED,
    get_or_create_run,
    inputs_complete,
    spec_hash,
    transition,
)
from shared.events import (
    ArtifactsCached,
    ArtifactsFailed,
    NodesFailed,
    NodesReady,
    NodesReplaced,
    TrainingCompleted,
    TrainingFailed,
    ValidationFailed,
)

__all__ = [
    "cancel_run",
    "deployments_to_start",
    "fail_inputs",
    "record_artifacts",
    "record_nodes",
    "record_spec",
    "release_nodes",
]


def _maybe_start(session: Session, run: Run, *, stage: Any) -> bool:
    """``waiting`` → ``staging`` once every input is known. True when the run became ready."""
    if run.state == "waiting" and inputs_complete(run):
        transition(session, run, to="staging", event=None, stage=stage)
        return True
    return False


def record_spec(
    session: Session,
    *,
    run_id: uuid.UUID,
    project_id: uuid.UUID | None,
    spec: dict[str, Any],
    stage: Any,
    owner_id: str | None = None,
) -> bool:
    """The run's spec arrived (ProjectCreated / RunRequested).

    ``owner_id``: whose secrets the run gets (the project's owner, or who requested the
    run); unknown, like the fetcher, it falls back to an earlier run of the project's.
    """
    run = get_or_create_run(session, run_id=run_id, project_id=project_id)
    if run.spec is None:
        run.spec, run.spec_hash = spec, spec_hash(spec)
    if run.owner_id is None:
        if owner_id is None and project_id is not None:
            owner_id = session.exec(
                select(Run.owner_id).where(
                    Run.project_id == project_id, col(Run.owner_id).is_not(None)
                )
            ).first()
        run.owner_id = owner_id
    return _maybe_start(session, run, stage=stage)


def record_nodes(
    session: Session,
    *,
    run_id: uuid.UUID,
    project_id: uuid.UUID | None,
    payload: NodesReady,
    stage: Any,
) -> bool:
    run = get_or_create_run(session, run_id=run_id, project_id=project_id)
    if run.nodes is None:
        run.nodes = [n.model_dump() for n in payload.nodes]
        run.env = payload.env.model_dump()
    return _maybe_start(session, run, stage=stage)


def record_replacement(
    session: Session,
    *,
    run_id: uuid.UUID,
    project_id: uuid.UUID | None,
    payload: NodesReplaced,
    stage: Any,
) -> bool:
    """Lost nodes were replaced: the run resumes (``staging``, from its last checkpoint)
    on the new node list. True when a job should pick it up."""
    run = get_or_create_run(session, run_id=run_id, project_id=project_id)
    if run.state != "replacing":
        return False
    transition(
        session,
        run,
        to="staging",
        event=None,
        stage=stage,
        nodes=[n.model_dump() for n in payload.nodes],
        processes=None,
        owner=None,
        lease_until=None,
    )
    return True


def record_artifacts(
    session: Session,
    *,
    run_id: uuid.UUID,
    project_id: uuid.UUID | None,
    payload: ArtifactsCached,
    stage: Any,
) -> bool:
    """Artifacts merge by kind, so one event with all of them or one per kind both work."""
    run = get_or_create_run(session, run_id=run_id, project_id=project_id)
    merged = {a["kind"]: a for a in run.artifacts or []}
    merged.update({a.kind: a.model_dump() for a in payload.artifacts})
    run.artifacts = list(merged.values())
    return _maybe_start(session, run, stage=stage)


def fail_inputs(
    session: Session,
    *,
    run_id: uuid.UUID,
    project_id: uuid.UUID | None,
    payload: NodesFailed | ArtifactsFailed | ValidationFailed,
    stage: Any,
) -> None:
    """Provisioning or fetching failed: the run fails (the provisioner then releases nodes)."""
    run = get_or_create_run(session, run_id=run_id, project_id=project_id)
    if run.state not in ("waiting", "staging", "replacing"):
        return
    if isinstance(payload, ValidationFailed):  # the check's event is the run's failure
        reason = f"pre-flight check failed: {payload.reason}"
        transition(session, run, to="failed", stage=stage, reason=reason, event=None)
        return
    what = "provisioning" if isinstance(payload, NodesFailed) else f"fetching {payload.source}"
    reason = f"{what} failed: {payload.reason}"
    transition(
        session,
        run,
        to="failed",
        stage=stage,
        reason=reason,
        event=TrainingFailed(reason=reason, retryable=payload.retryable),
    )


def cancel_run(
    session: Session, *, run_id: uuid.UUID, project_id: uuid.UUID | None, stage: Any
) -> bool:
    """Cancelled: the job (wherever it runs) sees the state and stops the processes."""
    run = get_or_create_run(session, run_id=run_id, project_id=project_id)
    if run.state in FINISHED:
        return False
    transition(session, run, to="cancelled", event=None, stage=stage, reason="cancelled")
    return True


def release_nodes(session: Session, *, run_id: uuid.UUID, nodes: list[str]) -> list[uuid.UUID]:
    """Nodes released: returns the deployments on them, to stop."""
    run = session.get(Run, run_id)
    if run is None:
        return []
    run.nodes_released = True
    session.add(run)
    deployments = session.exec(
        select(Deployment).where(
            Deployment.run_id == run_id,
            col(Deployment.status).in_(("starting", "running", "restarting")),
        )
    ).all()
    names = set(nodes)
    return [d.id for d in deployments if not names or (d.node or {}).get("name") in names]


def deployments_to_start(
    session: Session, *, run_id: uuid.UUID, payload: TrainingCompleted
) -> list[uuid.UUID]:
    """Training completed: the deployments its completion created, still to be started
    (``starting``), when the event says the run deploys; none otherwise."""
    if not payload.deploy:
        return []
    return list(
        session.exec(
            select(Deployment.id).where(
                Deployment.run_id == run_id, Deployment.status == "starting"
            )
        ).all()
    )
