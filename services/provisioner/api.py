"""Internal HTTP API of the provisioner (``AIDP_PROVISIONER_URL``)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request

from services.provisioner.models import RunNodes
from shared.db import run_sync
from shared.errors import NotFound
from shared.runtime import ServiceRuntime
from shared.service_auth import require_caller

__all__ = ["internal_router"]


def internal_router() -> APIRouter:
    # only the gateway calls these (service token, shared.service_auth)
    router = APIRouter(
        prefix="/internal", tags=["internal"], dependencies=[require_caller("gateway")]
    )

    @router.get("/runs/{run_id}/environment")
    async def run_environment(run_id: uuid.UUID, request: Request) -> dict[str, Any]:
        """The run's environment: its hash-pinned lock and what it resolved to."""
        runtime: ServiceRuntime = request.app.state.runtime
        return await run_sync(_environment, runtime, run_id)

    return router


def _environment(runtime: ServiceRuntime, run_id: uuid.UUID) -> dict[str, Any]:
    with runtime.db.session() as s:
        row = s.get(RunNodes, run_id)
        if row is None or row.lock is None:
            raise NotFound(f"run {run_id} has no environment (yet)")
        env = row.env or {}
        return {
            "lock_hash": row.lock_hash,
            "lock": row.lock,
            "python": env.get("python"),
            "python_version": env.get("python_version"),
            "torch_version": env.get("torch_version"),
            "framework": env.get("framework") or "pytorch",
            "tensorflow_version": env.get("tensorflow_version"),
            "keras_version": env.get("keras_version"),
            "accelerator": env.get("accelerator")
            or row.spec.get("resources", {}).get("accelerator", "cpu"),
            "state": row.state,
        }
