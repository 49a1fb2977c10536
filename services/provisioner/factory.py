"""Builds drivers by provider name; each module is imported only when first used."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from services.provisioner.drivers.base import NodeDriver
from services.provisioner.settings import ProvisionerSettings
from shared.secrets import SecretStore

__all__ = ["driver_factory"]


def driver_factory(
    settings: ProvisionerSettings,
    *,
    secrets: Callable[[], SecretStore],
    runs_holding: Callable[[str], set[uuid.UUID]],
    platform_allowed: Callable[[uuid.UUID | None], bool] = lambda _owner: False,
) -> Callable[[str, uuid.UUID | None], NodeDriver]:
    """``factory(provider, owner_id)``; ``secrets`` is read late (Vault connects at start);
    ``platform_allowed(owner)``: may the owner create cloud resources on the platform's
    credentials (:class:`~services.provisioner.cloud_access.CloudAccessPolicy`)."""

    def make(provider: str, owner_id: uuid.UUID | None) -> NodeDriver:
        if provider == "local":
            from services.provisioner.drivers.local import LocalDriver

            return LocalDriver(settings, runs_holding_node=lambda: runs_holding("local"))
        if provider == "ssh":
            from services.provisioner.drivers.ssh import SshDriver

            return SshDriver(settings, secrets=secrets())
        if provider == "idc":
            from services.provisioner.drivers.idc import IdcDriver

            return IdcDriver(
                settings, secrets=secrets(), owner_id=owner_id, platform_allowed=platform_allowed
            )
        raise ValueError(f"unknown provider {provider!r}")

    return make
