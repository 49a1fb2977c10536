"""Projects and runs: every state change and its event commit together.

Each function takes the runtime (database + outbox) and keyword-only arguments, changes
rows in ONE transaction, stages the events other services need in the outbox of that
same transaction, and wakes the relay after the commit. Members are in ``members.py``,
spec approvals and the audit trail in ``spec_approvals.py`` (re-exported here).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from services.gateway.deps import Access
from services.gateway.identity import Identity
from services.gateway.members import list_members, remove_member, set_member, stage_membership
from services.gateway.models import (
    TERMINAL_STATUSES,
    AuditEntry,
    Event,
    Invitation,
    Member,
    Project,
    Run,
    SpecApproval,
)
from services.gateway.runlimits import check_active_runs
from services.gateway.spec_approvals import (
    approve,
    audit,
    audit_trail,
    check_spec,
    spec_diff,
    spec_hash,
)
from services.gateway.webhooks import delete_project_webhooks
from shared.errors import Conflict, NotFound
from shared.events import (
    ProjectCreated,
    ProjectDeleted,
    RunCancelled,
    RunRequested,
    new_event,
)
from shared.runtime import ServiceRuntime
from shared.service.clock import utcnow
from shared.spec import ProjectSpec

# members and spec approvals live in their own modules; the routes reach every project
# operation through this one (``from services.gateway import projects as service``)
__all__ = [
    "audit_trail",
    "cancel_run",
    "create_project",
    "delete_project",
    "list_members",
    "list_projects",
    "list_runs",
    "remove_member",
    "request_run",
    "run_status",
    "set_member",
    "spec_diff",
    "spec_hash",
    "update_project",
]


def _spec_json(spec: ProjectSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json", exclude_none=True)


def _check_name_free(
    session: Any, owner_id: uuid.UUID, name: str, *, other_than: uuid.UUID | None = None
) -> None:
    """409 when the owner already has another project called ``name``."""
    query = select(col(Project.id)).where(
        col(Project.owner_id) == owner_id, col(Project.name) == name
    )
    if other_than is not None:
        query = query.where(col(Project.id) != other_than)
    if session.execute(query.limit(1)).first() is not None:
        raise Conflict(f"name: you already have a project named {name!r}; choose another name")


def _commit_named(session: Any, name: str) -> None:
    """Commit; a concurrent create of the same name (the unique index) answers 409."""
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(
            f"name: you already have a project named {name!r}; choose another name"
        ) from None


def create_project(
    runtime: ServiceRuntime,
    *,
    owner: Identity,
    name: str,
    spec: ProjectSpec,
    max_active_runs: int = 0,
) -> tuple[Project, Run]:
    """Store the project, its owner and run 1; stage ``ProjectCreated``.

    429 (:class:`~services.gateway.runlimits.TooManyActiveRuns`) when the owner already has
    ``max_active_runs`` active runs (0 = unlimited)."""
    spec_json = _spec_json(spec)
    digest = spec_hash(spec_json)
    project = Project(
        name=name,
        spec=spec_json,
        owner_id=owner.user_id,
        run_count=1,
        spec_changed_by=owner.user_id,
        spec_changed_at=utcnow(),
    )
    run = Run(project_id=project.id, number=1, spec=spec_json, requested_by=owner.user_id)
    project.current_run_id = run.id
    actor = {"actor_id": owner.user_id, "actor_email": owner.email or ""}
    with runtime.db.session() as session:
        check_active_runs(session, owner.user_id, max_active_runs)
        _check_name_free(session, owner.user_id, name)
        session.add(project)
        session.add(
            Member(project_id=project.id, user_id=owner.user_id, email=owner.email, role="owner")
        )
        session.add(run)
        approve(session, project.id, owner.user_id, spec_json, digest)
        audit(session, project.id, "project_created", spec_hash=digest, **actor)
        audit(
            session,
            project.id,
            "run_started",
            spec_hash=digest,
            run_id=run.id,
            run_number=1,
            **actor,
        )
        runtime.stage(
            session,
            new_event(
                ProjectCreated(owner_id=owner.user_id, spec=spec_json, run_number=1),
                project_id=project.id,
                run_id=run.id,
            ),
        )
        _commit_named(session, name)
    runtime.published()
    return project, run


def list_projects(
    runtime: ServiceRuntime, *, user: Identity, everything: bool = False
) -> list[tuple[Project, str, str | None]]:
    """(project, caller's role, current run status) for projects the caller holds a role on.

    ``everything`` (admins only) lists every project, as viewer where they hold no role.
    """
    with runtime.db.session() as session:
        query = (
            select(Project, col(Member.role), col(Run.status))
            .join(
                Member,
                (col(Member.project_id) == col(Project.id)) & (col(Member.user_id) == user.user_id),
                isouter=everything,
            )
            .join(Run, col(Run.id) == col(Project.current_run_id), isouter=True)
            .order_by(col(Project.created_at).desc())
        )
        rows = session.execute(query).all()
    return [(project, role or "viewer", status) for project, role, status in rows]


def run_status(runtime: ServiceRuntime, *, run_id: uuid.UUID | None) -> str | None:
    if run_id is None:
        return None
    with runtime.db.session() as session:
        run = session.get(Run, run_id)
    return run.status if run else None


def update_project(
    runtime: ServiceRuntime, *, access: Access, name: str | None, spec: ProjectSpec | None
) -> Project:
    """Rename the project and/or replace the spec used by later runs."""
    identity = access.identity
    with runtime.db.session() as session:
        project = session.get(Project, access.project.id, with_for_update=True)
        if project is None:
            raise NotFound("project not found")
        if name is not None and name != project.name:
            _check_name_free(session, project.owner_id, name, other_than=project.id)
            project.name = name
        if spec is not None:
            spec_json = _spec_json(spec)
            digest = spec_hash(spec_json)
            if digest != spec_hash(project.spec):
                project.spec = spec_json
                project.spec_changed_by, project.spec_changed_at = identity.user_id, utcnow()
                audit(
                    session,
                    project.id,
                    "spec_changed",
                    actor_id=identity.user_id,
                    actor_email=identity.email or "",
                    spec_hash=digest,
                )
            # whoever writes a spec has approved it (also when it was already this one)
            approve(session, project.id, identity.user_id, spec_json, digest)
        project.updated_at = utcnow()
        session.add(project)
        _commit_named(session, project.name)
    return project


def delete_project(runtime: ServiceRuntime, *, access: Access) -> None:
    """Cancel active runs, stage ``ProjectDeleted`` and remove every row of the project."""
    project_id = access.project.id
    by = access.identity.user_id
    with runtime.db.session() as session:
        project = session.get(Project, project_id, with_for_update=True)
        if project is None:
            raise NotFound("project not found")
        runs = session.execute(select(Run).where(col(Run.project_id) == project_id)).scalars().all()
        for run in runs:
            if run.status not in TERMINAL_STATUSES:
                runtime.stage(
                    session, new_event(RunCancelled(by=by), project_id=project_id, run_id=run.id)
                )
        runtime.stage(
            session,
            new_event(ProjectDeleted(by=by, run_ids=[r.id for r in runs]), project_id=project_id),
        )
        members = session.execute(
            select(col(Member.user_id)).where(col(Member.project_id) == project_id)
        ).scalars()
        for user_id in members:  # their open sockets on the project close (4403)
            stage_membership(runtime, session, project_id, user_id, None)
        for table in (Event, Run, Member, SpecApproval, AuditEntry, Invitation):
            session.execute(delete(table).where(col(table.project_id) == project_id))  # type: ignore[attr-defined]
        delete_project_webhooks(session, project_id)
        session.delete(project)
        session.commit()
    runtime.published()


# --- runs --------------------------------------------------------------------------------


def request_run(
    runtime: ServiceRuntime,
    *,
    access: Access,
    spec: ProjectSpec | None,
    confirm_spec_hash: str | None = None,
    max_active_runs: int = 0,
) -> Run:
    """Start the next run (409 while one is active); stage ``RunRequested``.

    429 when the requester already has ``max_active_runs`` active runs (0 = unlimited).

    With the stored spec, the run uses the requester's credentials only for a spec they
    wrote or approved: :class:`SpecChanged` (409 with the diff) unless they confirm it
    (``confirm_spec_hash``). An override ``spec`` is the requester's own and needs none.
    """
    by = access.identity.user_id
    with runtime.db.session() as session:
        project = session.get(Project, access.project.id, with_for_update=True)
        if project is None:
            raise NotFound("project not found")
        active = session.execute(
            select(col(Run.number)).where(
                col(Run.project_id) == project.id, col(Run.status).not_in(TERMINAL_STATUSES)
            )
        ).first()
        if active is not None:
            raise Conflict(f"run {active[0]} of this project is still active; cancel it first")
        check_active_runs(session, by, max_active_runs)
        if spec is None:
            check_spec(
                session, project, identity=access.identity, confirm_spec_hash=confirm_spec_hash
            )
        spec_json = _spec_json(spec) if spec is not None else project.spec
        project.run_count += 1
        run = Run(project_id=project.id, number=project.run_count, spec=spec_json, requested_by=by)
        project.current_run_id = run.id
        project.updated_at = utcnow()
        session.add(project)
        session.add(run)
        audit(
            session,
            project.id,
            "run_started",
            actor_id=by,
            actor_email=access.identity.email or "",
            spec_hash=spec_hash(spec_json),
            run_id=run.id,
            run_number=run.number,
        )
        runtime.stage(
            session,
            new_event(
                # the run acts with the requester's secrets and cloud access (see above)
                RunRequested(spec=spec_json, run_number=run.number, requested_by=by, owner_id=by),
                project_id=project.id,
                run_id=run.id,
            ),
        )
        session.commit()
    runtime.published()
    return run


def cancel_run(runtime: ServiceRuntime, *, run_id: uuid.UUID, by: uuid.UUID) -> Run:
    """Mark the run cancelled and stage ``RunCancelled``; 409 if it already finished."""
    with runtime.db.session() as session:
        run = session.get(Run, run_id, with_for_update=True)
        if run is None:
            raise NotFound("run not found")
        if run.status in TERMINAL_STATUSES:
            raise Conflict(f"run already {run.status}")
        now = utcnow()
        run.status, run.finished_at, run.updated_at = "cancelled", now, now
        session.add(run)
        runtime.stage(
            session, new_event(RunCancelled(by=by), project_id=run.project_id, run_id=run.id)
        )
        session.commit()
    runtime.published()
    return run


def list_runs(runtime: ServiceRuntime, *, project_id: uuid.UUID) -> list[Run]:
    with runtime.db.session() as session:
        return list(
            session.execute(
                select(Run)
                .where(col(Run.project_id) == project_id)
                .order_by(col(Run.number).desc())
            ).scalars()
        )
