"""Internal API of the platform cloud-credential policy (the gateway's ``/api/admin/cloud-access``).

- ``GET /internal/cloud-access`` → ``{"setting": {"all", "user_ids"}, "users": [{"user_id",
  "email", "granted_by", "granted_at"}], "max_price_per_hour", "max_price_per_user_hour"}``
- ``PUT /internal/cloud-access`` ``{"users": [{"user_id", "email"}], "actor_id"}`` → the same;
  replaces the admin list (the setting's users stay) and records the change
- ``GET /internal/cloud-access/changes`` → ``{"changes": [{"at", "actor_id", "before",
  "after"}]}``, newest first
- ``POST /internal/cloud-access/check`` ``{"user_id", "spec"}`` → 204, or 422 when the spec's
  price limits break the platform's caps (what can be known before a run: the per-user cap
  depends on the runs active then and is checked when provisioning), or when its
  ``resources.accelerator`` is not on the node (``local``: this machine; ``idc``: the
  instance type, where its name tells); every choice of ``resources.instance_type`` and
  ``resources.fallback`` is checked, and the 422 names the one refused

The request and answer bodies are declared in ``shared/contracts/cloud_access.py``; the
routes answer through those models (``response_model=``) and the gateway calls through
the typed calls beside them.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from fastapi import APIRouter, Request, Response

from services.provisioner.cloud_access import CloudAccessPolicy
from services.provisioner.drivers.base import RunContext
from shared.contracts.cloud_access import (
    ACCESS_PATH,
    CHANGES_PATH,
    CHECK_PATH,
    AccessChanges,
    AccessPolicy,
    AccessUpdate,
    SpecCheck,
)
from shared.errors import InvalidInput, ProviderError
from shared.service_auth import require_caller

__all__ = ["cloud_access_router"]

#: Driver refusals a spec's own numbers cause: answered 422 before the run exists.
_SPEC_REFUSALS = frozenset(
    {"over_platform_cap", "over_budget", "price_unknown", "accelerator_unavailable"}
)
#: Providers whose refusals are known before the run (ssh hosts are probed when they run).
_CHECKED_PROVIDERS = frozenset({"idc", "local"})
_PREFIX = ACCESS_PATH


def cloud_access_router(policy: CloudAccessPolicy) -> APIRouter:
    # only the gateway calls these (service token, shared.service_auth)
    router = APIRouter(prefix=_PREFIX, tags=["internal"], dependencies=[require_caller("gateway")])

    @router.get("", response_model=AccessPolicy)
    def show() -> AccessPolicy:
        """The platform cloud-credential policy: setting, admin list, caps."""
        return AccessPolicy.model_validate(policy.describe())

    @router.put("", response_model=AccessPolicy)
    def replace(body: AccessUpdate) -> AccessPolicy:
        """Replace the admin list of users allowed the platform's credentials (audited)."""
        policy.replace([(u.user_id, u.email) for u in body.users], actor=body.actor_id)
        return AccessPolicy.model_validate(policy.describe())

    @router.get(CHANGES_PATH.removeprefix(_PREFIX), response_model=AccessChanges)
    def changes() -> AccessChanges:
        """Who changed the admin list when, and how (newest first)."""
        return AccessChanges.model_validate({"changes": policy.changes()})

    @router.post(CHECK_PATH.removeprefix(_PREFIX), status_code=204, response_class=Response)
    async def check(body: SpecCheck, request: Request) -> Response:
        """Refuse (422) a spec whose price limits break the platform's caps for this user,
        or whose accelerator the provider's node lacks (an invalid spec: the 422 of
        validation)."""
        spec = body.spec
        choices = spec.resources.choices()
        for choice in choices:  # a fallback must keep within the caps as much as the first
            if choice.provider not in _CHECKED_PROVIDERS:
                continue
            driver = request.app.state.provisioner.drivers(choice.provider, body.user_id)
            ctx = RunContext(
                run_id=uuid.uuid4(),
                project_id=uuid.uuid4(),
                owner_id=body.user_id,
                spec=spec.narrowed(choice),
                state_dir=Path("/nonexistent"),  # check_request creates nothing
            )
            try:
                await driver.check_request(ctx)
            except ProviderError as exc:
                if exc.code in _SPEC_REFUSALS:
                    where = f"{choice.label()}: " if len(choices) > 1 else ""
                    raise InvalidInput(where + exc.message) from None
        return Response(status_code=204)

    return router
