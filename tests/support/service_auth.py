"""Test clients that call a service's internal routes the way the gateway does.

In embedded mode (the unit tests' apps) the services verify tokens signed with this
process's keys (:func:`shared.service_auth.in_process_keys`); ``vault`` gives a client for
services in distributed mode, signing with the caller's transit key there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.service_auth import (
    ServiceCredentials,
    SigningKeys,
    TransitSigningKeys,
    in_process_keys,
)

__all__ = ["as_service", "signing_keys"]


def signing_keys(vault: Any = None) -> SigningKeys:
    """The keys services use: Vault transit ones with a ``VaultClient``, else in process."""
    if vault is None:
        return in_process_keys()
    return TransitSigningKeys(vault)


def as_service(
    audience: str, *, caller: str = "gateway", vault: Any = None
) -> Callable[[Any], Any]:
    """An auth function (``client.auth = ...``, for httpx and the TestClient's httpx2) that
    sends ``caller``'s service token to ``audience`` on ``/internal/`` paths."""
    keys = signing_keys(vault)
    keys.ensure(caller)
    credentials = ServiceCredentials(caller, keys)

    def attach(request: Any) -> Any:
        if request.url.path.startswith("/internal/"):
            request.headers["Authorization"] = f"Bearer {credentials.token_for(audience)}"
        return request

    return attach
