"""Run status derived from events (docs/design.md §3), as a pure function.

``queued → preparing (provisioning ∥ fetching) → training → deploying →
deployed | succeeded | failed | cancelled``. Status only moves forward; a terminal status
never changes. Each stage records when it was entered (``preparing_at`` …).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.gateway.models import TERMINAL_STATUSES as TERMINAL
from shared.events import (
    Envelope,
    EventPayload,
    ModelDeployed,
    TrainingCompleted,
    TrainingProgress,
    parse_payload,
)

__all__ = ["TERMINAL", "RunChange", "derive"]

_RANK = {"queued": 0, "preparing": 1, "training": 2, "deploying": 3}

_STAGE_OF = {
    "ProvisioningProgress": "preparing",
    "NodesReady": "preparing",
    "FetchProgress": "preparing",
    "CachedRevisionUsed": "preparing",
    "ArtifactsCached": "preparing",
    "DatasetValidated": "preparing",
    "TrainingStarted": "training",
    "TrainingProgress": "training",
    "TrainingLog": "training",
}
_FAILURES = (
    "NodesFailed",
    "ArtifactsFailed",
    "ValidationFailed",
    "TrainingFailed",
    "DeploymentFailed",
)


@dataclass
class RunChange:
    """Columns of ``gateway_runs`` to update (empty: nothing to do)."""

    values: dict[str, Any] = field(default_factory=dict)


def _target(
    envelope: Envelope, payload: EventPayload, *, deploy_enabled: bool
) -> tuple[str | None, dict[str, Any]]:
    kind = envelope.type
    extra: dict[str, Any] = {}
    if kind in _STAGE_OF:
        if isinstance(payload, TrainingProgress):
            extra["progress"] = payload.model_dump(mode="json", exclude_none=True)
        return _STAGE_OF[kind], extra
    if kind in _FAILURES:
        if getattr(payload, "retryable", False):
            return None, {"error": str(getattr(payload, "reason", ""))}
        return "failed", {"error": str(getattr(payload, "reason", "failed"))}
    if isinstance(payload, TrainingCompleted):
        extra["model_version"] = payload.model_version
        # the event says whether the run deploys; the spec only for an older trainer's
        deploys = payload.deploy if payload.deploy is not None else deploy_enabled
        return ("deploying" if deploys else "succeeded"), extra
    if isinstance(payload, ModelDeployed):
        extra["deployment_id"] = payload.deployment_id
        extra["endpoint"] = payload.endpoint
        return "deployed", extra
    if kind == "RunCancelled":
        return "cancelled", extra
    return None, extra


def derive(envelope: Envelope, *, status: str, deploy_enabled: bool, now: datetime) -> RunChange:
    """The update an event makes to a run whose current status is ``status``."""
    try:
        payload = parse_payload(envelope)
    except Exception:  # an event this code cannot read changes no status
        return RunChange()
    if status in TERMINAL:
        return RunChange()
    target, extra = _target(envelope, payload, deploy_enabled=deploy_enabled)
    values: dict[str, Any] = dict(extra)
    if target is not None and (target in TERMINAL or _RANK[target] > _RANK[status]):
        values["status"] = target
        if target in TERMINAL:
            values["finished_at"] = now
        else:
            # entering a stage also stamps the stages it skipped, so timings stay ordered
            for stage in ("preparing", "training", "deploying"):
                if _RANK[status] < _RANK[stage] <= _RANK[target]:
                    values[f"{stage}_at"] = now
    if values:
        values["updated_at"] = now
    return RunChange(values)
