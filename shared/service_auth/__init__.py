"""Service-to-service authentication of every internal route (``/internal/*``).

A caller sends ``Authorization: Bearer <service token>``: a compact EdDSA JWS
(:mod:`.tokens`) naming the caller (``sub``) and the callee (``aud``), valid 5 minutes,
signed with the caller's own Ed25519 key; callers reuse a token until a minute before it
expires. Each internal router declares which services may call it
(:func:`require_caller`): no or an invalid token → 401, a valid one from a service not on
the list → 403.

Keys (:mod:`.keys`), one per service, named ``aidp-svc-<service>``:

- distributed mode: Vault transit keys of type ``ed25519``. A service's policy allows
  ``transit/sign/aidp-svc-<itself>`` only, so it can sign as itself alone; every policy
  allows reading ``transit/keys/aidp-svc-*``, the public keys, which callees cache (an
  unknown key version is looked up again at most every 10 s).
- embedded mode: keys generated in memory at start and never stored; the internal APIs
  are reached only in process (``inproc://``), never through a socket, and run the same
  check.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from shared.service_auth.credentials import ServiceAuth, ServiceCredentials, ServiceVerifier
from shared.service_auth.keys import (
    InProcessSigningKeys,
    SigningKeys,
    TransitSigningKeys,
    in_process_keys,
)
from shared.service_auth.tokens import ServiceClaims, key_name
from shared.service_auth.transport import ServiceTokenAuth, require_caller

if TYPE_CHECKING:
    from shared.secrets import KeyService
    from shared.settings import BaseServiceSettings

__all__ = [
    "InProcessSigningKeys",
    "ServiceAuth",
    "ServiceClaims",
    "ServiceCredentials",
    "ServiceTokenAuth",
    "ServiceVerifier",
    "SigningKeys",
    "TransitSigningKeys",
    "in_process_keys",
    "key_name",
    "require_caller",
    "signing_keys_for",
]

log = logging.getLogger(__name__)


def signing_keys_for(settings: BaseServiceSettings, keys: KeyService) -> SigningKeys:
    """Vault transit keys in distributed mode; this process's keys in embedded mode (and
    where a unit test injects an in-memory key service)."""
    from shared.secrets.vault import VaultClient

    if settings.mode == "distributed" and isinstance(keys, VaultClient):
        return TransitSigningKeys(keys)
    if settings.mode == "distributed":
        log.warning("service auth: no Vault key service; using in-process keys (tests only)")
    return in_process_keys()
