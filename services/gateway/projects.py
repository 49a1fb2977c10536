"""Projects, members and runs: every state change and its event commit together.

Each function takes the runtime (database + outbox) and keyword-only arguments, changes
rows in ONE transaction, stages the events other services need in the outbox of that
same transaction, and wakes the relay after the commit.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlmodel import col

from services.gateway.deps import Access, role_rank
from services.gateway.identity import Identity
from services.gateway.models import TERMINAL_STATUSES, Event, Member, Project, Run
from shared.errors import Conflict, Forbidden, NotFound
from shared.events import ProjectCreated, ProjectDeleted, RunCancelled, RunRequested, new_event
from shared.runtime import ServiceRuntime
from shared.spec import ProjectSpec

__all__ = [
    "cancel_run",
    "create_project",
    "delete_project",
    "list_members",
    "list_projects",
    "list_runs",
    "remove_member",
    "request_run",
    "set_member",
    "update_project",
]


def _now() -> datetime:
    return datetime.now(UTC)


def _spec_json(spec: ProjectSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json", exclude_none=True)


def create_project(
    runtime: ServiceRuntime, *, owner: Identity, name: str, spec: ProjectSpec
) -> tuple[Project, Run]:
    """Store the project, its owner and run 1; stage ``ProjectCreated``."""
    spec_json = _spec_json(spec)
    project = Project(name=name, spec=spec_json, owner_id=owner.user_id, run_count=1)
    run = Run(project_id=project.id, number=1, spec=spec_json, requested_by=owner.user_id)
    project.current_run_id = run.id
    with runtime.db.session() as session:
        session.add(project)
        session.add(
            Member(project_id=project.id, user_id=owner.user_id, email=owner.email, role="owner")
        )
        session.add(run)
        runtime.stage(
            session,
            new_event(
                ProjectCreated(owner_id=owner.user_id, spec=spec_json, run_number=1),
                project_id=project.id,
                run_id=run.id,
            ),
        )
        session.commit()
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
    with runtime.db.session() as session:
        project = session.get(Project, access.project.id)
        if project is None:
            raise NotFound("project not found")
        if name is not None:
            project.name = name
        if spec is not None:
            project.spec = _spec_json(spec)
        project.updated_at = _now()
        session.add(project)
        session.commit()
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
        for table in (Event, Run, Member):
            session.execute(delete(table).where(col(table.project_id) == project_id))  # type: ignore[attr-defined]
        session.delete(project)
        session.commit()
    runtime.published()


# --- runs --------------------------------------------------------------------------------


def request_run(runtime: ServiceRuntime, *, access: Access, spec: ProjectSpec | None) -> Run:
    """Start the next run (409 while one is active); stage ``RunRequested``."""
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
        spec_json = _spec_json(spec) if spec is not None else project.spec
        project.run_count += 1
        run = Run(project_id=project.id, number=project.run_count, spec=spec_json, requested_by=by)
        project.current_run_id = run.id
        project.updated_at = _now()
        session.add(project)
        session.add(run)
        runtime.stage(
            session,
            new_event(
                RunRequested(spec=spec_json, run_number=run.number, requested_by=by),
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
        now = _now()
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


# --- members -----------------------------------------------------------------------------


def list_members(runtime: ServiceRuntime, *, project_id: uuid.UUID) -> list[Member]:
    with runtime.db.session() as session:
        return list(
            session.execute(
                select(Member)
                .where(col(Member.project_id) == project_id)
                .order_by(col(Member.created_at))
            ).scalars()
        )


def _owners(session: Any, project_id: uuid.UUID) -> int:
    return int(
        session.execute(
            select(func.count()).where(
                col(Member.project_id) == project_id, col(Member.role) == "owner"
            )
        ).scalar_one()
    )


def set_member(
    runtime: ServiceRuntime, *, project_id: uuid.UUID, user_id: uuid.UUID, email: str, role: str
) -> tuple[Member, bool]:
    """Grant ``role`` (or change it); returns (member, created). The last owner stays."""
    with runtime.db.session() as session:
        member = session.get(Member, (project_id, user_id), with_for_update=True)
        created = member is None
        if member is None:
            member = Member(project_id=project_id, user_id=user_id, email=email, role=role)
        else:
            if member.role == "owner" and role != "owner" and _owners(session, project_id) <= 1:
                raise Conflict("a project keeps at least one owner")
            member.role, member.email = role, email or member.email
        session.add(member)
        session.commit()
    return member, created


def remove_member(runtime: ServiceRuntime, *, access: Access, user_id: uuid.UUID) -> None:
    """Remove a member (owners may remove anyone; anyone may leave); the last owner stays."""
    project_id = access.project.id
    if user_id != access.identity.user_id and role_rank(access.role) < role_rank("owner"):
        raise Forbidden("only owners remove other members")
    with runtime.db.session() as session:
        member = session.get(Member, (project_id, user_id), with_for_update=True)
        if member is None:
            raise NotFound("member not found")
        if member.role == "owner" and _owners(session, project_id) <= 1:
            raise Conflict("a project keeps at least one owner")
        session.delete(member)
        session.commit()
