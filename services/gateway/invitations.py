"""Member invitations: adding someone to a project needs their consent.

An owner's ``POST /api/projects/{id}/members {email, role}`` for someone who is not a
member yet stores a pending :class:`~services.gateway.models.Invitation` and answers the
same whether the email belongs to a registered user or not (no enumeration oracle). The
invitee sees it (``GET /api/invitations``: addressed to their user id, or to their email
when it was not registered at the time) and accepts — becoming a member with that role,
in the same transaction — or declines. Owners list (``GET …/invitations``) and withdraw
(``DELETE …/invitations/{id}``) pending ones. Each invitation counts against the
inviter's ``member_invites_per_hour`` (from the audit trail, so every replica agrees).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlmodel import col

from services.gateway.deps import role_rank
from services.gateway.identity import Identity
from services.gateway.models import AuditEntry, Invitation, Member, Project
from shared.errors import NotFound, RateLimited
from shared.runtime import ServiceRuntime
from shared.service.clock import utcnow

__all__ = [
    "accept_invitation",
    "decline_invitation",
    "invite",
    "invitations_for",
    "project_invitations",
    "withdraw_invitation",
]

_WINDOW = timedelta(hours=1)


def _check_rate(session: Any, actor: uuid.UUID, per_hour: int) -> None:
    since = utcnow() - _WINDOW
    sent = session.execute(
        select(func.count()).where(
            col(AuditEntry.actor_id) == actor,
            col(AuditEntry.action) == "member_invited",
            col(AuditEntry.at) >= since,
        )
    ).scalar_one()
    if int(sent) >= per_hour:
        raise RateLimited(
            f"at most {per_hour} member invitations per hour; try again later",
            retry_after=int(_WINDOW.total_seconds()),
        )


def invite(
    runtime: ServiceRuntime,
    *,
    project_id: uuid.UUID,
    email: str,
    user_id: uuid.UUID | None,
    role: str,
    actor: Identity,
    per_hour: int,
) -> Invitation:
    """Store (or re-role) the pending invitation of ``email``; rate limited per inviter."""
    email = email.strip().lower()
    with runtime.db.session() as session:
        _check_rate(session, actor.user_id, per_hour)
        invitation = session.execute(
            select(Invitation).where(
                col(Invitation.project_id) == project_id, col(Invitation.email) == email
            )
        ).scalar_one_or_none()
        if invitation is None:
            invitation = Invitation(
                project_id=project_id,
                email=email,
                user_id=user_id,
                role=role,
                invited_by=actor.user_id,
                invited_by_email=actor.email,
            )
        else:
            invitation.role, invitation.user_id = role, user_id or invitation.user_id
        session.add(invitation)
        session.add(
            AuditEntry(
                project_id=project_id,
                action="member_invited",
                actor_id=actor.user_id,
                actor_email=actor.email,
                subject_id=user_id,
                subject_email=email,
                role=role,
            )
        )
        session.commit()
        session.refresh(invitation)
        return invitation


def _mine(identity: Identity) -> Any:
    clauses = [col(Invitation.user_id) == identity.user_id]
    if identity.email:
        clauses.append(
            (col(Invitation.user_id).is_(None))
            & (col(Invitation.email) == identity.email.strip().lower())
        )
    return or_(*clauses)


def invitations_for(runtime: ServiceRuntime, *, identity: Identity) -> list[tuple[Invitation, str]]:
    """The caller's pending invitations, with each project's name, oldest first."""
    with runtime.db.session() as session:
        rows = session.execute(
            select(Invitation, col(Project.name))
            .join(Project, col(Project.id) == col(Invitation.project_id))
            .where(_mine(identity))
            .order_by(col(Invitation.created_at))
        ).all()
        return [(row[0], str(row[1])) for row in rows]


def project_invitations(runtime: ServiceRuntime, *, project_id: uuid.UUID) -> list[Invitation]:
    with runtime.db.session() as session:
        return list(
            session.execute(
                select(Invitation)
                .where(col(Invitation.project_id) == project_id)
                .order_by(col(Invitation.created_at))
            ).scalars()
        )


def _take(session: Any, invitation_id: uuid.UUID, identity: Identity) -> Invitation:
    invitation = session.execute(
        select(Invitation).where(col(Invitation.id) == invitation_id, _mine(identity))
    ).scalar_one_or_none()
    if invitation is None:
        raise NotFound("invitation not found")
    return invitation  # type: ignore[no-any-return]


def accept_invitation(
    runtime: ServiceRuntime, *, invitation_id: uuid.UUID, identity: Identity
) -> Member:
    """Become a member with the invited role (a member already keeps the higher role); the
    invitation is used up. One transaction."""
    with runtime.db.session() as session:
        invitation = _take(session, invitation_id, identity)
        project_id, role = invitation.project_id, invitation.role
        if session.get(Project, project_id, with_for_update=True) is None:
            raise NotFound("invitation not found")
        member = session.get(Member, (project_id, identity.user_id), with_for_update=True)
        if member is None:
            member = Member(
                project_id=project_id,
                user_id=identity.user_id,
                email=identity.email or invitation.email,
                role=role,
            )
            session.add(
                AuditEntry(
                    project_id=project_id,
                    action="member_added",
                    actor_id=identity.user_id,  # the invitee, who consented
                    actor_email=identity.email,
                    subject_id=identity.user_id,
                    subject_email=member.email,
                    role=role,
                )
            )
        elif role_rank(role) > role_rank(member.role):
            member.role = role
        session.add(member)
        session.delete(invitation)
        session.commit()
        session.refresh(member)
        return member


def decline_invitation(
    runtime: ServiceRuntime, *, invitation_id: uuid.UUID, identity: Identity
) -> None:
    with runtime.db.session() as session:
        session.delete(_take(session, invitation_id, identity))
        session.commit()


def withdraw_invitation(
    runtime: ServiceRuntime, *, project_id: uuid.UUID, invitation_id: uuid.UUID
) -> None:
    """An owner withdraws a pending invitation of their project."""
    with runtime.db.session() as session:
        result = session.execute(
            delete(Invitation).where(
                col(Invitation.id) == invitation_id, col(Invitation.project_id) == project_id
            )
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            raise NotFound("invitation not found")
        session.commit()
