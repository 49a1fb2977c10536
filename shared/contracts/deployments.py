"""The trainer's model and deployment API for the gateway (``services/trainer/api.py``).

- ``GET /internal/projects/{id}/models`` → a list of :class:`ModelRecord`;
  ``GET /internal/models/{id}`` → :class:`ModelRecord` (404 when there is none);
- ``POST /internal/models/{id}/deploy`` :class:`DeployRequest` → 202 :class:`DeployAnswer`;
- ``GET /internal/deployments?project_id=…`` (at most :data:`MAX_LISTED_PROJECTS`) → a list
  of :class:`DeploymentRecord`; ``GET|DELETE /internal/deployments/{id}``,
  ``POST …/stop|start``, ``POST …/promote`` :class:`PromoteRequest` and ``PATCH``
  :class:`ConfigureRequest` → :class:`DeploymentRecord`;
- ``GET /internal/projects/{id}/endpoint`` and ``POST …/endpoint/rollback`` →
  :class:`EndpointRecord`.

Predictions are ``shared.contracts.predict``'s; the OpenAI-compatible routes and model
downloads are relayed as the server sends them (only their errors are the shared shape).

The requests are strict (an unknown field is a 422); the answers ignore a field they do
not know, so the trainer may add one before the gateway shows it. The gateway calls the
routes through the typed calls at the end (an answer out of the contract is a 502). The
gateway's public bodies (``DeployIn``, ``DeploymentPatchIn``, ``PromoteIn``) keep their
own names in the public API; a unit test holds their fields and limits equal to these.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.answers import JsonCaller, parse_answer, parse_answers

__all__ = [
    "MAX_IDLE_TIMEOUT_S",
    "MAX_LISTED_PROJECTS",
    "MAX_REPLICAS",
    "ConfigureRequest",
    "DeployAnswer",
    "DeployRequest",
    "DeploymentRecord",
    "DeploymentStatus",
    "EndpointRecord",
    "ModelRecord",
    "PromoteRequest",
    "change_deployment",
    "deploy_model",
    "list_deployments",
    "list_models",
    "read_deployment",
    "read_endpoint",
    "read_model",
    "rollback_endpoint",
]

#: servers one deployment may run (round-robin)
MAX_REPLICAS = 8
#: the longest scale-to-zero idle time (30 days)
MAX_IDLE_TIMEOUT_S = 30 * 86400
#: projects one ``GET /internal/deployments`` may name (the gateway asks in chunks)
MAX_LISTED_PROJECTS = 200

DeploymentStatus = Literal[
    "starting", "running", "restarting", "idle", "waking", "stopped", "failed"
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")


class DeployRequest(_Request):
    """How to deploy: ``replicas`` servers, scale to zero after ``idle_timeout_s`` without
    a request, keep the project's other deployments running, become the live alias once
    running."""

    replicas: int = Field(1, ge=1, le=MAX_REPLICAS)
    idle_timeout_s: int | None = Field(None, ge=1, le=MAX_IDLE_TIMEOUT_S)
    keep_previous: bool = False
    promote: bool = True


class ConfigureRequest(_Request):
    """A deployment's new settings (unset: unchanged; ``idle_timeout_s`` 0: never scale
    to zero)."""

    replicas: int | None = Field(None, ge=1, le=MAX_REPLICAS)
    idle_timeout_s: int | None = Field(None, ge=0, le=MAX_IDLE_TIMEOUT_S)
    keep_previous: bool | None = None


class PromoteRequest(_Request):
    """``keep_previous``: the project's other deployments keep running (None: the
    deployment's own setting)."""

    keep_previous: bool | None = None


class ModelRecord(_Answer):
    """A registered model version (``digest``: its manifest key; ``method``: full, lora
    or qlora)."""

    id: str
    project_id: uuid.UUID
    run_id: uuid.UUID | None = None
    version: int
    task: str | None = None
    method: str = "full"
    digest: str | None = None
    size_bytes: int | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    lineage: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None


class DeploymentRecord(_Answer):
    """A deployment as the trainer keeps it; ``live``: its project's endpoint serves it."""

    id: str
    project_id: uuid.UUID
    model_id: str | None = None
    status: DeploymentStatus
    endpoint: str | None = None
    model_version: int | None = None
    run_id: uuid.UUID | None = None
    node: str | None = None
    replicas: int = Field(1, ge=0)
    replicas_up: int = Field(0, ge=0)
    idle_timeout_s: int | None = None
    keep_previous: bool = False
    live: bool = False
    restarts: int = 0
    reason: str | None = None
    last_request_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class DeployAnswer(DeploymentRecord):
    """The new deployment (``deployment_id`` repeats its ``id``)."""

    deployment_id: str


class EndpointRecord(_Answer):
    """A project's live alias: the deployment it serves, the one roll back returns to."""

    project_id: uuid.UUID
    deployment_id: str | None = None
    previous_deployment_id: str | None = None
    deployment: DeploymentRecord | None = None


# --- typed calls (the gateway's side) ---------------------------------------------------


async def list_models(
    trainer: JsonCaller, project_id: uuid.UUID, *, user_id: uuid.UUID
) -> list[ModelRecord]:
    body = await trainer.json("GET", f"/internal/projects/{project_id}/models", user_id=user_id)
    return parse_answers(ModelRecord, body, service=trainer.name)


async def read_model(trainer: JsonCaller, model_id: str, *, user_id: uuid.UUID) -> ModelRecord:
    body = await trainer.json("GET", f"/internal/models/{model_id}", user_id=user_id)
    return parse_answer(ModelRecord, body, service=trainer.name)


async def deploy_model(
    trainer: JsonCaller, model_id: str, request: DeployRequest, *, user_id: uuid.UUID
) -> DeployAnswer:
    body = await trainer.json(
        "POST", f"/internal/models/{model_id}/deploy", user_id=user_id, json=request.model_dump()
    )
    return parse_answer(DeployAnswer, body, service=trainer.name)


async def list_deployments(
    trainer: JsonCaller, project_ids: Sequence[uuid.UUID], *, user_id: uuid.UUID
) -> list[DeploymentRecord]:
    """The deployments of ``project_ids``, asked :data:`MAX_LISTED_PROJECTS` at a time."""
    found: list[DeploymentRecord] = []
    for start in range(0, len(project_ids), MAX_LISTED_PROJECTS):
        chunk = project_ids[start : start + MAX_LISTED_PROJECTS]
        body = await trainer.json(
            "GET",
            "/internal/deployments",
            user_id=user_id,
            params=[("project_id", str(pid)) for pid in chunk],
        )
        found += parse_answers(DeploymentRecord, body, service=trainer.name)
    return found


async def read_deployment(
    trainer: JsonCaller, deployment_id: str, *, user_id: uuid.UUID
) -> DeploymentRecord:
    body = await trainer.json("GET", f"/internal/deployments/{deployment_id}", user_id=user_id)
    return parse_answer(DeploymentRecord, body, service=trainer.name)


async def change_deployment(
    trainer: JsonCaller,
    deployment_id: str,
    change: Literal["stop", "start", "promote", "configure"],
    *,
    user_id: uuid.UUID,
    request: PromoteRequest | ConfigureRequest | None = None,
) -> DeploymentRecord:
    """Stop, start, promote (``request``: :class:`PromoteRequest`) or configure
    (:class:`ConfigureRequest`, only the fields set are sent) a deployment."""
    path = f"/internal/deployments/{deployment_id}"
    json: dict[str, Any] | None
    if change == "configure":
        method, json = "PATCH", request.model_dump(exclude_unset=True) if request else {}
    else:
        method, path = "POST", f"{path}/{change}"
        json = request.model_dump() if request else None
    body = await trainer.json(method, path, user_id=user_id, json=json)
    return parse_answer(DeploymentRecord, body, service=trainer.name)


async def read_endpoint(
    trainer: JsonCaller, project_id: uuid.UUID, *, user_id: uuid.UUID
) -> EndpointRecord:
    body = await trainer.json("GET", f"/internal/projects/{project_id}/endpoint", user_id=user_id)
    return parse_answer(EndpointRecord, body, service=trainer.name)


async def rollback_endpoint(
    trainer: JsonCaller, project_id: uuid.UUID, *, user_id: uuid.UUID
) -> EndpointRecord:
    body = await trainer.json(
        "POST", f"/internal/projects/{project_id}/endpoint/rollback", user_id=user_id
    )
    return parse_answer(EndpointRecord, body, service=trainer.name)
