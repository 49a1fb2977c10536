"""Deployment states and what the API shows of a deployment."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from services.trainer.models import Deployment

__all__ = ["LIVE", "WAITS", "Forwarded", "deployment_view"]

#: Deployment states in which a server should be up (and watched).
LIVE = ("starting", "running", "restarting", "waking")
#: States a request waits through (bounded) rather than being refused.
WAITS = ("starting", "waking", "idle")


def deployment_view(
    dep: Deployment, *, version: int | None = None, live_id: uuid.UUID | None = None
) -> dict[str, Any]:
    """The API view of a deployment (``version``: its model's; ``live_id``: the project's
    live deployment)."""
    return {
        "id": str(dep.id),
        "project_id": str(dep.project_id),
        "model_id": str(dep.model_id),
        "model_version": version,
        "run_id": str(dep.run_id) if dep.run_id else None,
        "status": dep.status,
        "endpoint": dep.endpoint,
        "node": (dep.node or {}).get("name"),
        "replicas": dep.replicas,
        "replicas_up": len(dep.procs or []) if dep.status == "running" else 0,
        "idle_timeout_s": dep.idle_timeout_s,
        "keep_previous": dep.keep_previous,
        "live": live_id is not None and live_id == dep.id,
        "restarts": dep.restarts,
        "reason": dep.reason,
        "last_request_at": dep.last_request_at.isoformat() if dep.last_request_at else None,
        "created_at": dep.created_at.isoformat(),
        "updated_at": dep.updated_at.isoformat(),
    }


class Forwarded:
    """A server's answer and how it was reached (the replica; whether it was cold)."""

    def __init__(self, response: httpx.Response, *, replica: int, cold: bool) -> None:
        self.response = response
        self.replica = replica
        self.cold = cold

    def headers(self) -> dict[str, str]:
        return {
            "X-Aidp-Replica": str(self.replica),
            "X-Aidp-Cold-Start": "true" if self.cold else "false",
        }
