"""``/api/invitations``: the caller's pending project invitations; accept or decline."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from services.gateway import invitations as service
from services.gateway.deps import CurrentUser, GatewayDep
from services.gateway.errors import responses
from services.gateway.routes.projects import invitation_out, member_out
from services.gateway.schemas import InvitationOut, MemberOut

__all__ = ["router"]

router = APIRouter(prefix="/api/invitations", tags=["projects"])


@router.get("", responses=responses(403))
def my_invitations(user: CurrentUser, gateway: GatewayDep) -> list[InvitationOut]:
    """Invitations addressed to you (by user, or by your email), oldest first."""
    rows = service.invitations_for(gateway.runtime, identity=user)
    return [invitation_out(i, project_name=name) for i, name in rows]


@router.post("/{invitation_id}/accept", responses=responses(403, 404))
def accept(invitation_id: uuid.UUID, user: CurrentUser, gateway: GatewayDep) -> MemberOut:
    """Join the project with the invited role."""
    member = service.accept_invitation(gateway.runtime, invitation_id=invitation_id, identity=user)
    return member_out(member)


@router.post(
    "/{invitation_id}/decline",
    status_code=204,
    response_class=Response,
    responses=responses(403, 404),
)
def decline(invitation_id: uuid.UUID, user: CurrentUser, gateway: GatewayDep) -> Response:
    """Refuse the invitation; it is removed."""
    service.decline_invitation(gateway.runtime, invitation_id=invitation_id, identity=user)
    return Response(status_code=204)
