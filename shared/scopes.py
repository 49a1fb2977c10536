"""API token scopes: what a token may do, enforced by the gateway on every route.

A session (a browser or CLI login) holds every scope its user may hold (``admin`` only for
platform admins). An API token holds the scopes chosen when it was created, never more than
its user's. Scopes narrow what a role allows; they never widen it (a ``deploy`` token of a
project viewer still cannot deploy).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ALL_SCOPES", "Scope", "parse_scopes"]


class Scope(StrEnum):
    READ = "read"  # every GET, WebSocket subscriptions, logs
    RUN = "run"  # create/edit projects, start and cancel runs, secrets
    DEPLOY = "deploy"  # start and stop deployments
    PREDICT = "predict"  # call inference endpoints
    ADMIN = "admin"  # platform administration (admin users only)


ALL_SCOPES: frozenset[Scope] = frozenset(Scope)


def parse_scopes(values: list[str] | tuple[str, ...] | None) -> frozenset[Scope]:
    """The scopes named by ``values`` (``None`` means every scope); unknown names raise
    ``ValueError`` with the valid ones listed."""
    if values is None:
        return ALL_SCOPES
    valid = {s.value for s in Scope}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise ValueError(f"unknown scope(s) {unknown}; valid scopes: {sorted(valid)}")
    return frozenset(Scope(v) for v in values)
