"""Refuse at submit a spec whose cloud price limits break the platform's caps, or whose
accelerator the provider's node lacks (``cuda`` asked of a CPU-only local machine).

The provisioner owns the caps (``AIDP_CLOUD_MAX_PRICE_PER_HOUR`` and who may use the
platform's credentials); ``POST /internal/cloud-access/check`` (its body declared in
``shared/contracts/cloud_access.py``) answers 422 when a spec asks more than they allow, or
an accelerator the node lacks. Asking before the run exists turns a
failed provisioning into a 422 the user sees at once. ``provider: idc`` specs and ``local``
ones asking an accelerator are sent, also when idc or local is only a
``resources.fallback`` (ssh hosts are only known when probed); the per-user cap
depends on the runs active when provisioning starts and is enforced there.

The provisioner enforces every cap again when it provisions, so this check is an early
answer, not the guard: a provisioner that cannot be reached lets the request through
(logged) rather than refusing every cloud project while it is down.
"""

from __future__ import annotations

import logging
import uuid

from services.gateway.downstream import Downstream
from shared.contracts.cloud_access import check_spec
from shared.errors import TransientError
from shared.spec import ProjectSpec

log = logging.getLogger(__name__)

__all__ = ["check_cloud_caps"]


async def check_cloud_caps(provisioner: Downstream, user_id: uuid.UUID, spec: ProjectSpec) -> None:
    """Raise ``InvalidInput`` (422) when ``spec`` breaks a platform cap for ``user_id`` or
    asks an accelerator its provider's node lacks."""
    res = spec.resources
    chain = res.providers()  # the fallback providers are held to the same caps
    if "idc" not in chain and not ("local" in chain and res.accelerator != "cpu"):
        return
    try:
        await check_spec(provisioner, user_id, spec)
    except TransientError:
        log.warning("provisioner unreachable: cloud caps will be checked when provisioning")
