"""A project's live alias: which deployment ``/api/projects/{id}/endpoint`` serves.

One row per project (``trainer_project_endpoints``): the live deployment and the earlier
live ones (oldest first, at most :data:`HISTORY`), so roll back returns to the one before.
Every move goes through :func:`set_live` inside the caller's transaction and emits one
``DeploymentPromoted``.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlmodel import Session

from services.trainer.models import Deployment, ProjectEndpoint
from shared.events import DeploymentPromoted, new_event
from shared.service.clock import utcnow

__all__ = ["HISTORY", "forget", "live_of", "previous_of", "set_live"]

#: Earlier live deployments remembered per project.
HISTORY = 20


def live_of(session: Session, project_id: uuid.UUID) -> uuid.UUID | None:
    """The project's live deployment, or None."""
    row = session.get(ProjectEndpoint, project_id)
    return row.deployment_id if row is not None else None


def previous_of(session: Session, project_id: uuid.UUID) -> uuid.UUID | None:
    """The deployment roll back would return to: the latest earlier live one that exists."""
    row = session.get(ProjectEndpoint, project_id)
    for raw in reversed((row.history if row is not None else None) or []):
        dep_id = uuid.UUID(raw)
        if dep_id != row.deployment_id and session.get(Deployment, dep_id) is not None:  # type: ignore[union-attr]
            return dep_id
    return None


def set_live(
    session: Session, *, dep: Deployment, stage: Any, run_id: uuid.UUID | None, rollback: bool
) -> uuid.UUID | None:
    """Point the project's alias at ``dep``; returns the deployment that was live before.

    A roll back drops ``dep`` and everything after it from the history; a promote pushes
    the one that was live.
    """
    row = session.get(ProjectEndpoint, dep.project_id)
    if row is None:
        row = ProjectEndpoint(project_id=dep.project_id, history=[])
    previous = row.deployment_id
    if previous == dep.id:
        return None
    history = [h for h in (row.history or [])]
    if rollback and str(dep.id) in history:
        history = history[: history.index(str(dep.id))]
    elif previous is not None:
        history = [h for h in history if h != str(previous)] + [str(previous)]
    row.history = history[-HISTORY:]
    row.deployment_id = dep.id
    row.updated_at = utcnow()
    session.add(row)
    stage(
        session,
        new_event(
            DeploymentPromoted(
                deployment_id=dep.id, previous_deployment_id=previous, rollback=rollback
            ),
            project_id=dep.project_id,
            run_id=run_id,
        ),
    )
    return previous


def forget(session: Session, *, dep: Deployment) -> None:
    """A deleted deployment leaves the alias and its history (the alias then points nowhere)."""
    row = session.get(ProjectEndpoint, dep.project_id)
    if row is None:
        return
    row.history = [h for h in (row.history or []) if h != str(dep.id)]
    if row.deployment_id == dep.id:
        row.deployment_id = None
    row.updated_at = utcnow()
    session.add(row)
