"""Privileged OpenBao operations: policies, scoped service tokens, root token generation.

These run with a root token only while bootstrapping (or re-issuing) the embedded vault; the
services themselves never hold more than their own policy (:mod:`shared.secrets.policies`).

- :func:`provision` enables the engines, creates the artifact key, writes every policy, a
  token role per service (orphan, periodic, renewable) and issues one token per service plus
  the recovery token; tokens of those roles issued before are revoked.
- :func:`generate_root` makes a new root token from the unseal key: through the
  authenticated ``sys/generate-root-token`` flow with the recovery token, or through the
  legacy unauthenticated ``sys/generate-root`` flow where the listener allows it.
- :func:`renew_self` / :func:`revoke_self`: a token renews or revokes itself.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.errors import TransientError
from shared.secrets.policies import (
    RECOVERY_POLICY,
    SERVICE_NAMES,
    PolicyParams,
    policy_name,
    render_all,
)
from shared.secrets.vault import VaultClient, VaultDenied, VaultError

__all__ = [
    "TOKEN_PERIOD",
    "Bao",
    "IssuedTokens",
    "generate_root",
    "provision",
    "renew_self",
    "revoke_self",
]

log = logging.getLogger(__name__)

#: Period of the embedded services' tokens: each renewal (every start, and hourly while
#: the platform runs) extends a token by this much; one not renewed for that long expires.
#: OpenBao caps periods at the system max TTL (768h by default).
TOKEN_PERIOD = "720h"


class Bao:
    """A minimal HTTP client for the ``sys/`` and ``auth/token/`` endpoints."""

    def __init__(self, addr: str, *, timeout: float = 30.0) -> None:
        self.addr = addr.rstrip("/")
        self.timeout = timeout

    def request(
        self, method: str, path: str, *, token: str | None = None, body: Any = None
    ) -> dict[str, Any]:
        """One call; JSON body back ({} when empty). 403 → VaultDenied, 5xx → transient."""
        headers = {"X-Vault-Token": token} if token else {}
        try:
            resp = httpx.request(
                method,
                f"{self.addr}/v1/{path}",
                headers=headers,
                json=body,
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            raise TransientError(f"OpenBao at {self.addr} is unreachable ({path})") from exc
        if resp.status_code == 403:
            raise VaultDenied(f"vault denied {method} {path}")
        if resp.status_code >= 500 or resp.status_code == 429:
            raise TransientError(f"OpenBao at {self.addr} answered {resp.status_code} ({path})")
        if resp.status_code >= 400:
            try:
                errors = resp.json().get("errors")
            except ValueError:
                errors = None
            raise VaultError(f"vault refused {method} {path}: {resp.status_code} {errors}")
        if not resp.content:
            return {}
        data: dict[str, Any] = resp.json()
        return data


@dataclass(frozen=True)
class IssuedTokens:
    """The embedded vault's scoped tokens: one per service, and the recovery token."""

    services: dict[str, str] = field(repr=False)
    recovery: str = field(repr=False)


def _role(service_or_policy: str) -> str:
    return (
        service_or_policy
        if service_or_policy == RECOVERY_POLICY
        else policy_name(service_or_policy)
    )


def write_policies(bao: Bao, root: str, params: PolicyParams, *, recovery: bool) -> None:
    for name, hcl in render_all(params, recovery=recovery).items():
        bao.request("PUT", f"sys/policies/acl/{name}", token=root, body={"policy": hcl})


def _issue(bao: Bao, root: str, role: str, period: str) -> tuple[str, str]:
    """Create (or update) the token role ``role`` and issue one token of it."""
    bao.request(
        "POST",
        f"auth/token/roles/{role}",
        token=root,
        body={
            "allowed_policies": [role],
            "orphan": True,  # outlives the root token that made it (revoked right after)
            "renewable": True,
            "token_period": period,
            "token_type": "service",
        },
    )
    auth = bao.request(
        "POST",
        f"auth/token/create/{role}",
        token=root,
        # the period also on the token itself (not only its role): lookups show it
        body={"display_name": role, "meta": {"aidp": role}, "period": period},
    )["auth"]
    return str(auth["client_token"]), str(auth["accessor"])


def _revoke_others(bao: Bao, root: str, roles: set[str], keep: set[str]) -> int:
    """Revoke every token of ``roles`` whose accessor is not in ``keep``; returns how many."""
    accessors = bao.request("LIST", "auth/token/accessors", token=root)["data"]["keys"]
    revoked = 0
    for accessor in accessors:
        if accessor in keep:
            continue
        try:
            info = bao.request(
                "POST", "auth/token/lookup-accessor", token=root, body={"accessor": accessor}
            )["data"]
        except VaultError:  # gone meanwhile
            continue
        if info.get("role") in roles:
            bao.request(
                "POST", "auth/token/revoke-accessor", token=root, body={"accessor": accessor}
            )
            revoked += 1
    return revoked


def provision(
    addr: str,
    root: str,
    params: PolicyParams,
    *,
    period: str = TOKEN_PERIOD,
) -> IssuedTokens:
    """Set the embedded vault up for least privilege and issue fresh scoped tokens."""
    admin = VaultClient(addr, token=root, mount=params.kv_mount, transit_mount=params.transit_mount)
    admin.ensure_mounts()
    admin.ensure_key(params.transit_key)
    bao = Bao(addr)
    write_policies(bao, root, params, recovery=True)
    services: dict[str, str] = {}
    accessors: set[str] = set()
    for service in SERVICE_NAMES:
        services[service], accessor = _issue(bao, root, _role(service), period)
        accessors.add(accessor)
    recovery, accessor = _issue(bao, root, RECOVERY_POLICY, period)
    accessors.add(accessor)
    roles = {_role(s) for s in SERVICE_NAMES} | {RECOVERY_POLICY}
    revoked = _revoke_others(bao, root, roles, accessors)
    log.info(
        "vault: issued scoped tokens for %s (%d older ones revoked)",
        ", ".join(SERVICE_NAMES),
        revoked,
    )
    return IssuedTokens(services=services, recovery=recovery)


def renew_self(addr: str, token: str) -> bool:
    """Renew ``token`` (resets a periodic token's TTL). False if it is invalid or expired."""
    try:
        Bao(addr).request("POST", "auth/token/renew-self", token=token, body={})
    except VaultError:  # 403 (revoked, expired) or 400 (not renewable)
        return False
    return True


def revoke_self(addr: str, token: str) -> None:
    """Revoke ``token`` (an already invalid token is fine)."""
    try:
        Bao(addr).request("POST", "auth/token/revoke-self", token=token, body={})
    except VaultError:
        pass


def _decode(encoded: str, otp: str) -> str:
    raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4))
    if len(raw) != len(otp):
        raise RuntimeError("generate-root: the encoded token and the OTP differ in length")
    return bytes(a ^ b for a, b in zip(raw, otp.encode(), strict=True)).decode()


def generate_root(addr: str, unseal_key: str, *, token: str | None = None) -> str:
    """A new root token from the unseal key (a single key share, as the embedded vault has).

    With ``token`` (one allowed ``sys/generate-root-token/*``, e.g. the recovery token) it
    uses the authenticated flow; without, the unauthenticated ``sys/generate-root`` one,
    which OpenBao only answers where the listener sets
    ``disable_unauthed_generate_root_endpoints = false``. Any attempt in progress is
    cancelled first. The caller revokes the token when done with it.
    """
    bao = Bao(addr)
    base = "sys/generate-root-token" if token else "sys/generate-root"
    try:
        bao.request("DELETE", f"{base}/attempt", token=token)
    except VaultError:
        pass
    started = bao.request("POST" if token else "PUT", f"{base}/attempt", token=token, body={})
    attempt = started.get("data") or started
    nonce, otp = str(attempt["nonce"]), str(attempt["otp"])
    done = bao.request(
        "POST" if token else "PUT",
        f"{base}/update",
        token=token,
        body={"key": unseal_key, "nonce": nonce},
    )
    result = done.get("data") or done
    encoded = result.get("encoded_token") or result.get("encoded_root_token")
    if not result.get("complete") or not encoded:
        raise RuntimeError("generate-root did not complete: is this the vault's unseal key?")
    return _decode(str(encoded), otp)
