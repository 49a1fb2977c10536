"""``/api/secrets``: the caller's named secrets. Values go to Vault only; names come back."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Path, Response

from services.gateway.deps import CurrentUser, GatewayDep
from services.gateway.errors import responses
from services.gateway.schemas import SECRET_NAME, SecretIn, SecretList
from shared.errors import AidpError, NotFound, TransientError

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/secrets", tags=["secrets"])

SecretName = Annotated[str, Path(pattern=SECRET_NAME, max_length=128)]
T = TypeVar("T")


def _vault(call: Callable[[], T]) -> T:
    """Run a secret-store call; a store failure is a 503, never a 500 (nor a value leak)."""
    try:
        return call()
    except AidpError:
        raise
    except Exception as exc:
        log.warning("secret store call failed: %s", type(exc).__name__)
        raise TransientError("the secret store is unavailable") from None


@router.put("/{name}", status_code=204, response_class=Response, responses=responses(503))
def put_secret(
    name: SecretName, body: SecretIn, user: CurrentUser, gateway: GatewayDep
) -> Response:
    """Store (or replace) a secret value in Vault under the caller."""
    store = gateway.runtime.secrets
    _vault(lambda: store.put_user_secret(str(user.user_id), name, body.value))
    return Response(status_code=204)


@router.get("", responses=responses(503))
def list_secrets(user: CurrentUser, gateway: GatewayDep) -> SecretList:
    """Names of the caller's secrets (never values)."""
    store = gateway.runtime.secrets
    return SecretList(names=_vault(lambda: store.list_user_secrets(str(user.user_id))))


@router.delete("/{name}", status_code=204, response_class=Response, responses=responses(404, 503))
def delete_secret(name: SecretName, user: CurrentUser, gateway: GatewayDep) -> Response:
    """Delete every version of a secret."""
    store = gateway.runtime.secrets
    if not _vault(lambda: store.delete_user_secret(str(user.user_id), name)):
        raise NotFound("secret not found")
    return Response(status_code=204)
