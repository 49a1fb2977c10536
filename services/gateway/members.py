"""Project members: grant, change and remove roles; the last owner stays.

A role change or removal stages ``MembershipChanged`` in the same transaction, so every
gateway replica re-authorises the user's open WebSockets; each change is audited.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from services.gateway.deps import Access, role_rank
from services.gateway.identity import Identity
from services.gateway.models import Member
from services.gateway.spec_approvals import audit
from shared.errors import Conflict, Forbidden, NotFound
from shared.events import MembershipChanged, new_event
from shared.runtime import ServiceRuntime

__all__ = ["list_members", "remove_member", "set_member", "stage_membership"]


def list_members(runtime: ServiceRuntime, *, project_id: uuid.UUID) -> list[Member]:
    with runtime.db.session() as session:
        return list(
            session.execute(
                select(Member)
                .where(col(Member.project_id) == project_id)
                .order_by(col(Member.created_at))
            ).scalars()
        )


def stage_membership(
    runtime: ServiceRuntime,
    session: Any,
    project_id: uuid.UUID,
    user_id: uuid.UUID,
    role: str | None,
) -> None:
    """Stage ``MembershipChanged``: every gateway replica re-authorises the user's sockets."""
    runtime.stage(
        session, new_event(MembershipChanged(user_id=user_id, role=role), project_id=project_id)
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
    runtime: ServiceRuntime,
    *,
    project_id: uuid.UUID,
    user_id: uuid.UUID,
    email: str,
    role: str,
    actor: Identity | None = None,
) -> tuple[Member, bool]:
    """Grant ``role`` (or change it); returns (member, created). The last owner stays."""
    with runtime.db.session() as session:
        member = session.get(Member, (project_id, user_id), with_for_update=True)
        created = member is None
        if member is None:
            member = Member(project_id=project_id, user_id=user_id, email=email, role=role)
            action = "member_added"
        else:
            if member.role == "owner" and role != "owner" and _owners(session, project_id) <= 1:
                raise Conflict("a project keeps at least one owner")
            action = "member_role_changed" if member.role != role else ""
            member.role, member.email = role, email or member.email
        session.add(member)
        if action == "member_role_changed":
            stage_membership(runtime, session, project_id, user_id, role)
        if action:
            audit(
                session,
                project_id,
                action,
                actor_id=actor.user_id if actor else None,
                actor_email=actor.email if actor else "",
                subject_id=user_id,
                subject_email=member.email,
                role=role,
            )
        session.commit()
    runtime.published()
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
        audit(
            session,
            project_id,
            "member_left" if user_id == access.identity.user_id else "member_removed",
            actor_id=access.identity.user_id,
            actor_email=access.identity.email,
            subject_id=user_id,
            subject_email=member.email,
            role=member.role,
        )
        session.delete(member)
        stage_membership(runtime, session, project_id, user_id, None)
        session.commit()
    runtime.published()
