"""The provisioner's cloud-access API for the gateway (its ``cloud_access_api.py``).

- ``GET /internal/cloud-access`` → :class:`AccessPolicy` (the setting, the admin list, the
  price caps);
- ``PUT /internal/cloud-access`` takes :class:`AccessUpdate` (the admin list) → the new
  :class:`AccessPolicy`;
- ``GET /internal/cloud-access/changes`` → :class:`AccessChanges` (newest first);
- ``POST /internal/cloud-access/check`` :class:`SpecCheck` → 204, or 422 (the shared error
  shape) naming the cap or the accelerator the spec breaks.

The provisioner declares its routes with these models; the gateway calls through
:func:`read_policy`, :func:`replace_users`, :func:`list_changes` and :func:`check_spec`, so
a renamed field fails on both sides at once and an answer out of the contract is a 502
naming the provisioner.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.answers import JsonCaller, parse_answer
from shared.spec import ProjectSpec

__all__ = [
    "ACCESS_PATH",
    "CHANGES_PATH",
    "CHECK_PATH",
    "AccessChange",
    "AccessChanges",
    "AccessEntry",
    "AccessPolicy",
    "AccessSetting",
    "AccessUpdate",
    "AccessUser",
    "SpecCheck",
    "check_spec",
    "list_changes",
    "read_policy",
    "replace_users",
]

ACCESS_PATH = "/internal/cloud-access"
CHANGES_PATH = f"{ACCESS_PATH}/changes"
CHECK_PATH = f"{ACCESS_PATH}/check"

#: users on the admin list one ``PUT`` may name
MAX_ACCESS_USERS = 10_000


class SpecCheck(BaseModel):
    """Would ``spec`` keep within the platform's caps for ``user_id`` (who submits it)?"""

    model_config = ConfigDict(extra="forbid")

    user_id: uuid.UUID
    spec: ProjectSpec


class AccessUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: uuid.UUID
    email: str | None = Field(None, max_length=320)


class AccessUpdate(BaseModel):
    """The new admin list of users allowed the platform's credentials; ``actor_id``: who
    changed it (recorded)."""

    model_config = ConfigDict(extra="forbid")

    users: list[AccessUser] = Field(max_length=MAX_ACCESS_USERS)
    actor_id: uuid.UUID | None = None


class AccessSetting(BaseModel):
    """``AIDP_CLOUD_PLATFORM_CREDENTIAL_USERS``: everyone (``all``) or the ids it names."""

    all: bool
    user_ids: list[uuid.UUID]


class AccessEntry(BaseModel):
    """One user on the admin list: ``email`` is for display only (None when the admin named
    a user id); ``granted_by``: the admin who added them (None: no actor recorded)."""

    user_id: uuid.UUID
    email: str | None = None
    granted_by: uuid.UUID | None = None
    granted_at: datetime


class AccessPolicy(BaseModel):
    """Who may provision on the platform's cloud credentials (the setting's users and the
    admin list's) and the platform's price caps in USD an hour (None: no cap)."""

    setting: AccessSetting
    users: list[AccessEntry]
    max_price_per_hour: float | None = None
    max_price_per_user_hour: float | None = None


class AccessChange(BaseModel):
    """One replacement of the admin list: when, by whom (None: not recorded), the list
    before and after."""

    at: datetime
    actor_id: uuid.UUID | None = None
    before: list[AccessEntry]
    after: list[AccessEntry]


class AccessChanges(BaseModel):
    """The latest changes of the admin list, newest first."""

    changes: list[AccessChange]


class Requester(Protocol):
    """A client whose error answers are raised as the taxonomy's errors (``Downstream``)."""

    async def request(self, method: str, path: str, **kwargs: Any) -> Any: ...


async def check_spec(provisioner: Requester, user_id: uuid.UUID, spec: ProjectSpec) -> None:
    """Ask the provisioner; its 422 is raised as ``InvalidInput`` by the client."""
    body = SpecCheck(user_id=user_id, spec=spec)
    await provisioner.request("POST", CHECK_PATH, json=body.model_dump(mode="json"))


async def read_policy(provisioner: JsonCaller) -> AccessPolicy:
    """The platform's cloud-credential policy: setting, admin list, caps."""
    body = await provisioner.json("GET", ACCESS_PATH)
    return parse_answer(AccessPolicy, body, service=provisioner.name)


async def replace_users(provisioner: JsonCaller, update: AccessUpdate) -> AccessPolicy:
    """Make ``update.users`` the admin list (recorded with ``update.actor_id``); the policy
    as it is afterwards."""
    body = await provisioner.json("PUT", ACCESS_PATH, json=update.model_dump(mode="json"))
    return parse_answer(AccessPolicy, body, service=provisioner.name)


async def list_changes(provisioner: JsonCaller) -> AccessChanges:
    """The audit trail of the admin list, newest first."""
    body = await provisioner.json("GET", CHANGES_PATH)
    return parse_answer(AccessChanges, body, service=provisioner.name)
