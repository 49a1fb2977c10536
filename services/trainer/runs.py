"""The per-run state machine: every state change goes through :func:`transition`.

States::

    waiting ──► staging ──► training ──► succeeded ──► deploying ──► deployed
       │           │ ▲          │                          └──────► deploy_failed
       │           │ └──retry───┤
       └───────────┴────────────┴──► failed | cancelled

``waiting`` collects the spec (``ProjectCreated``/``RunRequested``), ``NodesReady`` and
``ArtifactsCached`` in any order; once all are known the run moves to ``staging`` and a
background job picks it up (:mod:`services.trainer.training.runner`). A run that lost a
node waits in ``replacing`` (NodeLost sent, no job owns it) until ``NodesReplaced`` brings
it back to ``staging`` on the new node list, or ``NodesFailed`` fails it. A transition
changes the row and stages at most one event in the same transaction (outbox), so the
state and the event commit together.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from sqlmodel import Session

from services.trainer.models import Run
from shared.errors import Conflict
from shared.events import EventPayload, new_event
from shared.service.clock import utcnow
from shared.spec import ProjectSpec

__all__ = [
    "ACTIVE",
    "FINISHED",
    "TRANSITIONS",
    "get_or_create_run",
    "inputs_complete",
    "spec_hash",
    "transition",
]

TRANSITIONS: dict[str, frozenset[str]] = {
    "waiting": frozenset({"staging", "failed", "cancelled"}),
    "staging": frozenset({"staging", "training", "replacing", "failed", "cancelled"}),
    "training": frozenset({"staging", "replacing", "succeeded", "failed", "cancelled"}),
    "replacing": frozenset({"staging", "failed", "cancelled"}),
    "succeeded": frozenset({"deploying"}),
    "deploying": frozenset({"deployed", "deploy_failed"}),
    "deployed": frozenset(),
    "deploy_failed": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}

#: States in which a background job owns the run.
ACTIVE = frozenset({"staging", "training"})
#: States after which no training happens any more.
FINISHED = frozenset({"succeeded", "deploying", "deployed", "deploy_failed", "failed", "cancelled"})


def spec_hash(spec: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a spec (lineage)."""
    return hashlib.sha256(
        json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def get_or_create_run(session: Session, *, run_id: uuid.UUID, project_id: uuid.UUID | None) -> Run:
    """The run row, created in ``waiting`` on the first event that names it."""
    run = session.get(Run, run_id)
    if run is None:
        run = Run(run_id=run_id, project_id=project_id)
        session.add(run)
    elif run.project_id is None and project_id is not None:
        run.project_id = project_id
    return run


def inputs_complete(run: Run) -> bool:
    """True when the spec, the nodes and every artifact the spec needs are known."""
    if run.spec is None or run.nodes is None or run.artifacts is None:
        return False
    kinds = {a["kind"] for a in run.artifacts}
    spec = ProjectSpec.model_validate(run.spec)
    needed = {"model"} | ({"dataset"} if spec.dataset else set())
    return needed <= kinds


def transition(
    session: Session,
    run: Run,
    *,
    to: str,
    event: EventPayload | None,
    stage: Any,
    **changes: Any,
) -> None:
    """Move ``run`` to state ``to``, apply ``changes`` and stage ``event`` (one, or none).

    ``stage(session, envelope)`` is the runtime's outbox writer. Raises :class:`Conflict`
    if the state machine does not allow the move (e.g. the run was cancelled meanwhile).
    """
    if to not in TRANSITIONS[run.state]:
        raise Conflict(f"run {run.run_id}: {run.state} -> {to} is not allowed")
    run.state = to
    for name, value in changes.items():
        setattr(run, name, value)
    run.updated_at = utcnow()
    session.add(run)
    if event is not None:
        stage(session, new_event(event, project_id=run.project_id, run_id=run.run_id))
