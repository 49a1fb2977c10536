"""``/api/projects``: create, list, read, change and delete projects; manage members."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from services.gateway import invitations, reads
from services.gateway import projects as service
from services.gateway.cloud_caps import check_cloud_caps
from services.gateway.deps import (
    CurrentUser,
    GatewayDep,
    ProjectEditor,
    ProjectOwner,
    ProjectViewer,
)
from services.gateway.errors import responses
from services.gateway.models import Invitation, Member, Project
from services.gateway.schemas import (
    AuditEntryOut,
    AuditPage,
    InvitationOut,
    MemberIn,
    MemberOut,
    ProjectIn,
    ProjectOut,
    ProjectPatch,
)
from services.gateway.scopes import InsufficientScope
from shared.contracts.identity import lookup_user
from shared.db import run_sync
from shared.scopes import Scope

__all__ = ["router"]

router = APIRouter(prefix="/api/projects", tags=["projects"])


def project_out(project: Project, *, role: str, status: str | None) -> ProjectOut:
    return ProjectOut(
        id=project.id,
        name=project.name,
        spec=project.spec,
        status=status,  # type: ignore[arg-type]
        current_run_id=project.current_run_id,
        role=role,  # type: ignore[arg-type]
        created_at=project.created_at,
        updated_at=project.updated_at,
    )


def invitation_out(invitation: Invitation, *, project_name: str | None) -> InvitationOut:
    return InvitationOut(
        id=invitation.id,
        project_id=invitation.project_id,
        project_name=project_name,
        email=invitation.email,
        role=invitation.role,  # type: ignore[arg-type]
        invited_by_email=invitation.invited_by_email,
        created_at=invitation.created_at,
    )


def member_out(member: Member) -> MemberOut:
    return MemberOut(user_id=member.user_id, email=member.email, role=member.role)  # type: ignore[arg-type]


@router.post("", status_code=201, responses=responses(422, 429))
async def create_project(body: ProjectIn, user: CurrentUser, gateway: GatewayDep) -> ProjectOut:
    """Create a project from a spec (docs/design.md §4) and start its run 1 (422 when its cloud
    price limits break the platform's caps)."""
    await check_cloud_caps(gateway.downstream.provisioner, user.user_id, body.spec)
    project, run = await run_sync(
        service.create_project,
        gateway.runtime,
        owner=user,
        name=body.name,
        spec=body.spec,
        max_active_runs=gateway.settings.user_max_active_runs,
    )
    return project_out(project, role="owner", status=run.status)


@router.get("", response_model=list[ProjectOut], responses=responses(403))
async def list_projects(
    user: CurrentUser,
    gateway: GatewayDep,
    everything: Annotated[bool, Query(alias="all")] = False,
) -> Response:
    """Projects you hold a role on (``all=true``: every project, platform admins only,
    with a token holding the ``admin`` scope; 403 ``insufficient_scope`` otherwise)."""
    if everything and Scope.ADMIN not in user.scopes:
        # the admin listing is platform administration: a read-only token of an admin
        # (e.g. a CI key) must not see every tenant's projects
        raise InsufficientScope(Scope.ADMIN)
    body = await reads.projects_answer(
        gateway.db.aio, user=user, everything=everything and user.is_admin
    )
    return Response(content=body, media_type="application/json")


@router.get("/{project_id}", response_model=ProjectOut, responses=responses(404))
async def get_project(project: reads.ProjectRead) -> Response:
    return reads.json_response(project.row)


@router.patch("/{project_id}", responses=responses(403, 404))
def update_project(body: ProjectPatch, access: ProjectEditor, gateway: GatewayDep) -> ProjectOut:
    """Rename, or replace the spec used by later runs (editor)."""
    project = service.update_project(gateway.runtime, access=access, name=body.name, spec=body.spec)
    status = service.run_status(gateway.runtime, run_id=project.current_run_id)
    return project_out(project, role=access.role, status=status)


@router.delete(
    "/{project_id}", status_code=204, response_class=Response, responses=responses(403, 404)
)
def delete_project(access: ProjectOwner, gateway: GatewayDep) -> Response:
    """Cancel active runs, tear down (``ProjectDeleted``) and remove the project (owner)."""
    service.delete_project(gateway.runtime, access=access)
    return Response(status_code=204)


@router.get("/{project_id}/members", responses=responses(404))
def list_members(access: ProjectViewer, gateway: GatewayDep) -> list[MemberOut]:
    return [
        member_out(m) for m in service.list_members(gateway.runtime, project_id=access.project.id)
    ]


@router.post(
    "/{project_id}/members",
    status_code=202,
    response_model=InvitationOut | MemberOut,
    responses={
        200: {"model": MemberOut, "description": "An existing member's role changed"},
        202: {"model": InvitationOut, "description": "Invited (whether or not registered)"},
        **responses(403, 404, 409, 429, 503),
    },
)
async def add_member(
    body: MemberIn, access: ProjectOwner, gateway: GatewayDep, response: Response
) -> InvitationOut | MemberOut:
    """Invite ``email`` with ``role`` (owner): 202 with the pending invitation, the same
    answer whether or not the email is registered; the invitee accepts it at
    ``POST /api/invitations/{id}/accept``. For someone already a member: 200, role changed."""
    user_id, email = await _lookup(gateway, body.email)
    project_id = access.project.id
    if user_id is not None:
        members = await run_sync(service.list_members, gateway.runtime, project_id=project_id)
        if any(m.user_id == user_id for m in members):
            member, _created = await run_sync(
                service.set_member,
                gateway.runtime,
                project_id=project_id,
                user_id=user_id,
                email=email,
                role=body.role,
                actor=access.identity,
            )
            response.status_code = 200
            return member_out(member)
    invitation = await run_sync(
        invitations.invite,
        gateway.runtime,
        project_id=project_id,
        email=email,
        user_id=user_id,
        role=body.role,
        actor=access.identity,
        per_hour=gateway.settings.member_invites_per_hour,
    )
    return invitation_out(invitation, project_name=access.project.name)


async def _lookup(gateway: GatewayDep, email: str) -> tuple[uuid.UUID | None, str]:
    """The registered user behind ``email`` (None when there is none) and the email to
    address the invitation to (auth's canonical form when registered)."""
    found = await lookup_user(gateway.downstream.auth, email)
    if found is None:
        return None, email
    try:
        return uuid.UUID(found.id), found.email or email
    except ValueError:  # not an id auth would give: treat as unknown, as before
        return None, email


@router.get("/{project_id}/invitations", responses=responses(403, 404))
def list_project_invitations(access: ProjectOwner, gateway: GatewayDep) -> list[InvitationOut]:
    """Pending invitations of the project (owner)."""
    rows = invitations.project_invitations(gateway.runtime, project_id=access.project.id)
    return [invitation_out(i, project_name=access.project.name) for i in rows]


@router.delete(
    "/{project_id}/invitations/{invitation_id}",
    status_code=204,
    response_class=Response,
    responses=responses(403, 404),
)
def withdraw_invitation(
    invitation_id: uuid.UUID, access: ProjectOwner, gateway: GatewayDep
) -> Response:
    """Withdraw a pending invitation (owner)."""
    invitations.withdraw_invitation(
        gateway.runtime, project_id=access.project.id, invitation_id=invitation_id
    )
    return Response(status_code=204)


@router.delete(
    "/{project_id}/members/{user_id}",
    status_code=204,
    response_class=Response,
    responses=responses(403, 404, 409),
)
def remove_member(user_id: uuid.UUID, access: ProjectViewer, gateway: GatewayDep) -> Response:
    """Remove a member (owner), or leave the project yourself."""
    service.remove_member(gateway.runtime, access=access, user_id=user_id)
    return Response(status_code=204)


@router.get("/{project_id}/audit", responses=responses(403, 404))
def audit_trail(
    access: ProjectOwner,
    gateway: GatewayDep,
    after: Annotated[int, Query(ge=0, le=2**62, description="Only entries with a larger id.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> AuditPage:
    """The project's audit trail, oldest first (owner): spec changes and approvals (with
    the spec hash), run starts, members added, changed, removed."""
    rows = service.audit_trail(
        gateway.runtime, project_id=access.project.id, after=after, limit=limit
    )
    entries = [AuditEntryOut.model_validate(r, from_attributes=True) for r in rows]
    return AuditPage(entries=entries, next_after=entries[-1].id if entries else after)
