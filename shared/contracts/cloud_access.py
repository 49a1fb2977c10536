"""The provisioner's cloud-access API for the gateway (its ``cloud_access_api.py``).

- ``POST /internal/cloud-access/check`` :class:`SpecCheck` → 204, or 422 (the shared error
  shape) naming the cap or the accelerator the spec breaks;
- ``PUT /internal/cloud-access`` takes :class:`AccessUpdate` (the admin list).

The provisioner declares its routes with these models; the gateway sends the check through
:func:`check_spec`, so a renamed field fails on both sides at once.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from shared.spec import ProjectSpec

__all__ = ["CHECK_PATH", "AccessUpdate", "AccessUser", "SpecCheck", "check_spec"]

CHECK_PATH = "/internal/cloud-access/check"

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


class Requester(Protocol):
    """A client whose error answers are raised as the taxonomy's errors (``Downstream``)."""

    async def request(self, method: str, path: str, **kwargs: Any) -> Any: ...


async def check_spec(provisioner: Requester, user_id: uuid.UUID, spec: ProjectSpec) -> None:
    """Ask the provisioner; its 422 is raised as ``InvalidInput`` by the client."""
    body = SpecCheck(user_id=user_id, spec=spec)
    await provisioner.request("POST", CHECK_PATH, json=body.model_dump(mode="json"))
