"""``/api/admin/cloud-access``: who may provision on the platform's cloud credentials
(platform admins only; the policy lives in the provisioner, ``/internal/cloud-access``).

- ``GET /api/admin/cloud-access`` → the setting (``AIDP_CLOUD_PLATFORM_CREDENTIAL_USERS``),
  the admin list ``users`` [{user_id, email, granted_by, granted_at}] and the price caps
- ``PUT /api/admin/cloud-access`` ``{"users": ["email or user id", …]}`` → the same; replaces
  the admin list (emails are resolved to accounts: an unknown one is a 422, nothing changes)
- ``GET /api/admin/cloud-access/changes`` → every change: when, by whom, before and after

Everyone else gets 403. Each change is recorded by the provisioner with the admin's id and
logged here. The provisioner's answers are read through its contract
(``shared/contracts/cloud_access.py``; an answer out of it is a 502); the public answers keep
their untyped schema (``dict``), so the web client's types do not change.
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from services.gateway.deps import CurrentUser, GatewayDep
from services.gateway.errors import responses
from services.gateway.identity import Identity
from shared.contracts import cloud_access as contract
from shared.contracts.answers import parse_answer
from shared.contracts.identity import lookup_user
from shared.errors import Forbidden, InvalidInput

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/admin", tags=["admin"])


def _admin(user: CurrentUser) -> Identity:
    if not user.is_admin:
        raise Forbidden("platform admins only")
    return user


Admin = Annotated[Identity, Depends(_admin)]


class CloudAccessIn(BaseModel):
    """The users (emails or user ids) allowed the platform's cloud credentials."""

    model_config = ConfigDict(extra="forbid")

    users: list[Annotated[str, Field(min_length=1, max_length=320)]] = Field(max_length=1000)


async def _resolve(gateway: GatewayDep, entry: str) -> contract.AccessUser:
    """The account of an email or a user id (422 when no account has it)."""
    try:
        user_id = uuid.UUID(entry)
    except ValueError:
        pass
    else:
        return contract.AccessUser(user_id=user_id)
    found = await lookup_user(gateway.downstream.auth, entry)
    if found is None:
        raise InvalidInput(f"no user with the email {entry!r}")
    # an account id that is not a UUID is auth's answer out of contract: a 502, not a 500
    account = {"user_id": found.id, "email": found.email}
    return parse_answer(contract.AccessUser, account, service=gateway.downstream.auth.name)


# The public answers stay ``dict[str, Any]``: their OpenAPI schema (and web/src/api-types.ts)
# is what it was before the contract; the body is the contract's, checked on the way in.


@router.get("/cloud-access", responses=responses(403, 503))
async def get_cloud_access(admin: Admin, gateway: GatewayDep) -> dict[str, Any]:
    """Who may use the platform's cloud credentials, and the platform's price caps."""
    policy = await contract.read_policy(gateway.downstream.provisioner)
    return policy.model_dump(mode="json")


@router.put("/cloud-access", responses=responses(403, 503))
async def put_cloud_access(
    body: CloudAccessIn, admin: Admin, gateway: GatewayDep
) -> dict[str, Any]:
    """Replace the admin list of users allowed the platform's cloud credentials (audited)."""
    users = [await _resolve(gateway, entry) for entry in dict.fromkeys(body.users)]
    update = contract.AccessUpdate(users=users, actor_id=admin.user_id)
    policy = await contract.replace_users(gateway.downstream.provisioner, update)
    log.info(
        "cloud access list replaced by admin %s: %s",
        admin.user_id,
        ", ".join(str(u.user_id) for u in users) or "nobody",
    )
    return policy.model_dump(mode="json")


@router.get("/cloud-access/changes", responses=responses(403, 503))
async def cloud_access_changes(admin: Admin, gateway: GatewayDep) -> dict[str, Any]:
    """The audit trail of the admin list (newest first)."""
    changes = await contract.list_changes(gateway.downstream.provisioner)
    return changes.model_dump(mode="json")
