"""Request and response bodies of the public API.

Requests are strict (``extra="forbid"``: an unknown field is a 422 naming it). Responses
are built field by field from rows or downstream answers and never carry a secret value.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts import PredictRequest, PredictResponse
from shared.spec import ProjectSpec

__all__ = [
    "ArtifactOut",
    "AuditEntryOut",
    "AuditPage",
    "DeployOut",
    "DeploymentOut",
    "EnvironmentOut",
    "ErrorOut",
    "EventPage",
    "LogLine",
    "LogPage",
    "MemberIn",
    "MemberOut",
    "ModelOut",
    "PredictIn",
    "PredictOut",
    "ProjectIn",
    "ProjectOut",
    "ProjectPatch",
    "Role",
    "RunIn",
    "RunOut",
    "SecretIn",
    "SecretList",
    "SpecChangedOut",
    "StoredEvent",
    "UploadOut",
]

Role = Literal["viewer", "editor", "owner"]
RunStatus = Literal[
    "queued", "preparing", "training", "deploying", "deployed", "succeeded", "failed", "cancelled"
]

SECRET_NAME = r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$"
EMAIL = r"^[^@\s]{1,64}@[^@\s]{1,255}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --- errors -----------------------------------------------------------------------------


class ErrorDetail(_Out):
    code: str
    message: str


class ErrorOut(_Out):
    """Every error answer: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


class SpecChangedDetail(ErrorDetail):
    spec_hash: str | None = Field(
        None, description="Hash of the current spec: pass it as `confirm_spec_hash`."
    )
    approved_spec_hash: str | None = Field(
        None, description="Hash of the spec you last wrote or approved (null: none)."
    )
    changed_by: uuid.UUID | None = Field(None, description="Who last changed the spec.")
    changed_by_email: str | None = None
    changed_at: datetime | None = None
    changed_paths: list[str] = Field(
        default_factory=list, description="Dotted paths that differ from your approved spec."
    )
    diff: str = Field("", description="Unified diff (YAML) of your approved spec → current.")


class SpecChangedOut(_Out):
    """409 ``spec_changed``: the error plus what changed."""

    error: SpecChangedDetail


# --- secrets ----------------------------------------------------------------------------


class SecretIn(_In):
    value: str = Field(min_length=1, max_length=65_536, description="Stored in Vault only.")


class SecretList(_Out):
    names: list[str]


# --- projects, members ------------------------------------------------------------------


class ProjectIn(_In):
    name: str = Field(min_length=1, max_length=200)
    spec: ProjectSpec


class ProjectPatch(_In):
    name: str | None = Field(None, min_length=1, max_length=200)
    spec: ProjectSpec | None = None


class ProjectOut(_Out):
    id: uuid.UUID
    name: str
    spec: dict[str, Any]
    status: RunStatus | None
    current_run_id: uuid.UUID | None
    role: Role
    created_at: datetime
    updated_at: datetime


class MemberIn(_In):
    email: str = Field(pattern=EMAIL, max_length=320)
    role: Role


class MemberOut(_Out):
    user_id: uuid.UUID
    email: str
    role: Role


class InvitationOut(_Out):
    """A pending invitation: seen by the project's owners and by the invitee."""

    id: uuid.UUID
    project_id: uuid.UUID
    project_name: str | None = None
    email: str
    role: Role
    invited_by_email: str
    created_at: datetime
    status: Literal["invited"] = "invited"


# --- runs, events, logs -----------------------------------------------------------------


class RunIn(_In):
    spec: ProjectSpec | None = Field(None, description="Override of the project's spec.")
    confirm_spec_hash: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="Hash of the stored spec you approve (from a 409 `spec_changed`).",
    )


class RunOut(_Out):
    id: uuid.UUID
    project_id: uuid.UUID
    number: int
    status: RunStatus
    error: str | None
    progress: dict[str, Any] | None
    model_version: str | None
    deployment_id: uuid.UUID | None
    endpoint: str | None
    created_at: datetime
    updated_at: datetime
    preparing_at: datetime | None
    training_at: datetime | None
    deploying_at: datetime | None
    finished_at: datetime | None


class AuditEntryOut(_Out):
    id: int
    at: datetime
    action: str = Field(
        description="project_created, spec_changed, spec_approved, run_started, "
        "member_invited, member_added, member_role_changed, member_removed, member_left"
    )
    actor_id: uuid.UUID | None
    actor_email: str
    spec_hash: str | None = None
    run_id: uuid.UUID | None = None
    run_number: int | None = None
    subject_id: uuid.UUID | None = None
    subject_email: str | None = None
    role: Role | None = None


class AuditPage(_Out):
    entries: list[AuditEntryOut]
    next_after: int = Field(description="Pass as `after` to get the next page.")


class StoredEvent(_Out):
    seq: int
    event: dict[str, Any] = Field(description="The envelope (docs/design.md §3).")


class EventPage(_Out):
    events: list[StoredEvent]
    next_after: int = Field(description="Pass as `after` to get the next page.")


class LogLine(_Out):
    seq: int
    node: str
    stream: str
    text: str


class LogPage(_Out):
    lines: list[LogLine]
    next_after: int


# --- artifacts, models, deployments (answers of other services, filtered) -------------


class ArtifactOut(_Out):
    source: str
    kind: str
    resolved_revision: str | None = None
    digest: str | None = None  # None: another user's upload (its digest is theirs to know)
    size_bytes: int
    cache_key: str | None = None
    last_used_at: datetime | None = None
    pinned: bool = False


class UploadOut(_Out):
    id: str
    uri: str
    size_bytes: int
    digest: str
    filename: str | None = None


class ModelOut(_Out):
    id: str
    project_id: uuid.UUID
    run_id: uuid.UUID | None = None
    version: str | int | None = None
    task: str | None = None
    #: full, lora or qlora (a LoRA version holds the adapter and its base under base/)
    method: str = "full"
    digest: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    lineage: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None


class DeploymentOut(_Out):
    """A deployment. ``status``: starting, running, restarting, idle (scaled to zero; the
    next request starts it: a cold start), waking, stopped, failed. ``live``: the
    project's endpoint (``/api/projects/{id}/endpoint``) serves it."""

    id: str
    project_id: uuid.UUID
    model_id: str | None = None
    status: str
    endpoint: str | None = None
    model_version: int | None = None
    run_id: uuid.UUID | None = None
    node: str | None = None
    replicas: int = 1
    replicas_up: int = 0
    idle_timeout_s: int | None = None
    keep_previous: bool = False
    live: bool = False
    restarts: int = 0
    reason: str | None = None
    last_request_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    project_name: str | None = None  # filled in by the gateway
    role: str | None = None  # the caller's role on the project


class DeployIn(_In):
    """``POST /api/models/{id}/deploy``: ``replicas`` servers (round-robin);
    ``idle_timeout_s``: scale to zero after that long without a request; ``keep_previous``:
    the project's other deployments keep running; ``promote``: become the project's live
    endpoint once running."""

    replicas: int = Field(1, ge=1, le=8)
    idle_timeout_s: int | None = Field(None, ge=1, le=30 * 86400)
    keep_previous: bool = False
    promote: bool = True


class DeploymentPatchIn(_In):
    """Change a deployment's settings (``idle_timeout_s`` 0: never scale to zero); a new
    replica count restarts a running deployment's servers with it."""

    replicas: int | None = Field(None, ge=1, le=8)
    idle_timeout_s: int | None = Field(None, ge=0, le=30 * 86400)
    keep_previous: bool | None = None


class PromoteIn(_In):
    """``keep_previous``: the project's other deployments keep running (default: the
    deployment's own setting)."""

    keep_previous: bool | None = None


class EndpointOut(_Out):
    """A project's live alias: the deployment its endpoint serves, and the one roll back
    returns to."""

    project_id: uuid.UUID
    deployment_id: str | None = None
    previous_deployment_id: str | None = None
    deployment: DeploymentOut | None = None


# the trainer's internal predict route takes the same shapes (shared.contracts)
PredictIn = PredictRequest
PredictOut = PredictResponse


class EnvironmentOut(_Out):
    lock_hash: str
    lock: str | dict[str, Any] | list[Any] | None = None
    python: str | None = None
    torch_version: str | None = None
    framework: str | None = None  # pytorch | tensorflow
    tensorflow_version: str | None = None
    keras_version: str | None = None
    accelerator: str | None = None


class DeployOut(_Out):
    deployment_id: str
    status: str | None = None
    endpoint: str | None = None
