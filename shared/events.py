"""Every event that crosses the bus, and the envelope that carries it.

Wire format: one JSON object per message, the :class:`Envelope`, whose ``payload`` holds
the fields of one event class declared below. Routing key = ``type``.

Versioning rules (enforced by ``tests/unit/shared/test_event_contracts.py`` and its goldens):

1. Event names are past tense and never reused. ``version`` starts at 1.
2. A new payload field is added only with a default, so old producers stay valid.
3. Consumers ignore unknown fields (payloads use ``extra="ignore"``), so old consumers
   survive new producers.
4. Renaming, removing or retyping a field is a breaking change: declare the new shape as
   the same class name with ``__version__`` raised by one and register an upcaster from
   the previous version with :func:`upcaster`. Consumers always see the newest version.
5. Events carry references to secrets (names), never their values; a source URL is carried
   without user info or query string (they may hold credentials or a signed-URL token).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.service.clock import utcnow
from shared.urls import public_url, scrub_urls

__all__ = [
    "EVENT_TYPES",
    "ArtifactRef",
    "ArtifactsCached",
    "ArtifactsFailed",
    "DatasetValidated",
    "PreflightIssue",
    "ValidationFailed",
    "CachedRevisionUsed",
    "DeploymentFailed",
    "DeploymentPromoted",
    "DeploymentScaled",
    "DeploymentStopped",
    "Envelope",
    "EventPayload",
    "FetchProgress",
    "ModelDeployed",
    "NodeInfo",
    "NodeLost",
    "NodesFailed",
    "NodesReady",
    "NodesReleased",
    "NodesReplaced",
    "EnvInfo",
    "ProjectCreated",
    "ProjectDeleted",
    "ProvisioningProgress",
    "RunCancelled",
    "RunRequested",
    "MembershipChanged",
    "SessionsRevoked",
    "SigningKeyRevoked",
    "STATUS_EVENT_TYPES",
    "TrainingCompleted",
    "TrainingFailed",
    "TrainingLog",
    "TrainingProgress",
    "TrainingStarted",
    "UnknownEventError",
    "new_event",
    "parse_payload",
    "run_owner",
    "upcaster",
]


class EventPayload(BaseModel):
    """Base of every event payload. Unknown fields are ignored (rule 3)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    __version__: ClassVar[int] = 1

    @classmethod
    def event_type(cls) -> str:
        return cls.__name__


class Envelope(BaseModel):
    """The one wire message. ``payload`` is the event's fields as plain JSON."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    version: int = 1
    occurred_at: datetime = Field(default_factory=utcnow)
    project_id: uuid.UUID | None = None
    run_id: uuid.UUID | None = None
    correlation_id: uuid.UUID | None = None
    causation_id: uuid.UUID | None = None
    traceparent: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        return cls.model_validate_json(data)


# --- lifecycle -------------------------------------------------------------------------


class ProjectCreated(EventPayload):
    """A project was created; it starts run 1 (``run_id`` on the envelope)."""

    owner_id: uuid.UUID
    spec: dict[str, Any]
    run_number: int = 1


class RunRequested(EventPayload):
    """A later run of an existing project, with its (possibly overridden) spec."""

    spec: dict[str, Any]
    run_number: int = 1
    requested_by: uuid.UUID | None = None
    #: The run's owner: whose secrets, cloud access and quotas it uses (the gateway's
    #: rule: the member who asked, else the project's owner). None: a producer older than
    #: the field (consumers then fall back, see :func:`run_owner`).
    owner_id: uuid.UUID | None = None


def run_owner(event: ProjectCreated | RunRequested) -> uuid.UUID | None:
    """The owner a run-starting event names; None when an older producer named none
    (the consumer then keeps the owner of the project's previous run)."""
    if isinstance(event, ProjectCreated):
        return event.owner_id
    return event.owner_id or event.requested_by


class RunCancelled(EventPayload):
    """A user cancelled the run; services stop their work for it."""

    by: uuid.UUID | None = None


class ProjectDeleted(EventPayload):
    """A project was deleted: every service drops its data and releases its nodes."""

    by: uuid.UUID | None = None
    run_ids: list[uuid.UUID] = Field(default_factory=list)


# --- provisioning ------------------------------------------------------------------------


class ProvisioningProgress(EventPayload):
    stage: str
    message: str = ""
    percent: float | None = None


#: one OpenSSH public-key line: key type, base64 key, optional comment; never a newline
_OPENSSH_KEY_LINE = re.compile(r"[A-Za-z0-9@.+-]{1,64} [A-Za-z0-9+/]+={0,2}(?: [^\r\n]*)?")


class NodeInfo(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    address: str
    ssh_user: str | None = None
    ssh_port: int = 22
    proxy: str | None = None
    workdir: str
    accelerator: str = "cpu"
    provider: str = "local"
    python: str | None = None  # interpreter of the node's environment
    #: unprivileged user that runs training and serving on an SSH/IDC node (node_base
    #: creates it where the login user can become root); None: they run as the login user
    run_user: str | None = None
    #: the node's host keys the provisioner pinned on first contact, as OpenSSH public-key
    #: lines (``ssh-ed25519 AAAA...``): the trainer checks the node against exactly these
    #: (:mod:`shared.nodes`). Empty: an older producer (or a local node); the trainer then
    #: keeps its known_hosts file rule.
    host_keys: tuple[str, ...] = ()
    #: the same for the jump host (``proxy``), when the node has one and keys are announced
    proxy_host_keys: tuple[str, ...] = ()

    @field_validator("host_keys", "proxy_host_keys")
    @classmethod
    def _openssh_key_lines(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        for key in keys:
            if not _OPENSSH_KEY_LINE.fullmatch(key):
                raise ValueError(
                    f"{key[:60]!r} is not an OpenSSH public-key line ('<type> <base64>')"
                )
        return keys


class EnvInfo(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    lock_hash: str
    python: str
    torch_version: str  # "" in a TensorFlow env (no torch)
    accelerator: str = "cpu"
    framework: str = "pytorch"  # environment.framework: pytorch | tensorflow
    tensorflow_version: str = ""  # a TensorFlow env's (keras_version beside it)
    keras_version: str = ""


class NodesReady(EventPayload):
    nodes: list[NodeInfo]
    env: EnvInfo


class NodesFailed(EventPayload):
    reason: str
    retryable: bool = False
    step: str | None = None


class NodesReleased(EventPayload):
    nodes: list[str] = Field(default_factory=list)


class NodeLost(EventPayload):
    """The trainer lost a node mid-run (its SSH connection dropped or failed keepalives,
    or it sent no line, heartbeats included, for ``AIDP_TRAINER_NODE_TIMEOUT_SECONDS``, and
    it did not answer again): the provisioner replaces ``nodes`` (names as in NodesReady)
    and answers NodesReplaced, or NodesFailed (``step: replace``) when it cannot or the
    run's replacement budget is spent. ``attempt``: the launch that lost them;
    ``resume_step``: the step of the checkpoint the run resumes from (None: from the
    start)."""

    nodes: list[str]
    reason: str
    attempt: int = 1
    resume_step: int | None = None
    #: not lost: the training ran out of memory and the spec's ``retry_larger_on_oom`` asks
    #: for the run's next choice (every node moves there, once per run)
    larger: bool = False


class NodesReplaced(EventPayload):
    """Replacement nodes are ready (same driver: a new IDC instance, the next free host of
    ``resources.hosts``), configured with the run's environment. ``nodes``: the run's whole
    node list again (a replacement keeps the lost node's name and rank); ``replaced``: the
    names replaced; ``replacements``: how many nodes the run has had replaced so far."""

    nodes: list[NodeInfo]
    replaced: list[str] = Field(default_factory=list)
    reason: str = ""
    replacements: int = 1


# --- artifacts ---------------------------------------------------------------------------


class FetchProgress(EventPayload):
    source: str
    bytes_done: int
    bytes_total: int | None = None

    _public_source = field_validator("source")(lambda v: public_url(v))


class CachedRevisionUsed(EventPayload):
    """The provider could not be reached, so a floating ref (``@main``, a tag) was fetched at
    its last recorded resolution from the cache (a warning; the run goes on). A spec with
    ``strict_revisions: true`` fails with ``ArtifactsFailed`` instead."""

    source: str
    ref: str
    resolved_revision: str
    resolved_at: str  # ISO 8601, when the ref last resolved to ``resolved_revision``
    reason: str

    _public_source = field_validator("source")(lambda v: public_url(v))
    _public_reason = field_validator("reason")(lambda v: scrub_urls(v))


class ArtifactRef(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: Literal["model", "dataset"]
    source: str
    resolved_revision: str
    digest: str
    size_bytes: int
    cache_key: str

    _public_source = field_validator("source")(lambda v: public_url(v))


class ArtifactsCached(EventPayload):
    artifacts: list[ArtifactRef]


class ArtifactsFailed(EventPayload):
    source: str
    reason: str
    retryable: bool = False

    _public_source = field_validator("source")(lambda v: public_url(v))
    _public_reason = field_validator("reason")(lambda v: scrub_urls(v))


# --- pre-flight check (chat / causal-lm) --------------------------------------------------


class PreflightIssue(BaseModel):
    """One flagged row of a pre-flight check: ``row`` is 1-based within ``file`` (a JSONL
    line number, skipping blank lines); ``severity`` error fails the check, warning does not."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    file: str
    row: int
    problem: str
    severity: Literal["error", "warning"] = "error"


class DatasetValidated(EventPayload):
    """The fetcher's pre-flight check of an LLM task's data passed (after ArtifactsCached,
    before any node is provisioned: the provisioner waits for it). The first
    ``rows_checked`` rows were rendered (chat: with the model's chat template) and
    tokenized with the model's tokenizer. ``method`` is the training method the run will use
    (the spec's, else chosen from ``model_params``); ``estimated_*`` are rough (a FLOP
    model of the accelerator). ``issues`` holds warnings only (rows over ``max_length``)."""

    task: str
    rows_checked: int
    rows_total: int | None = None
    tokens_mean: float | None = None
    tokens_max: int | None = None
    max_length: int | None = None
    over_max_length: int = 0
    method: str | None = None
    model_params: int | None = None
    estimated_steps: int | None = None
    estimated_seconds: float | None = None
    issues: list[PreflightIssue] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class ValidationFailed(EventPayload):
    """The pre-flight check failed: the run ends failed with ``reason`` and ``issues`` (the
    malformed rows, with row numbers; at most 50) and nothing is provisioned."""

    task: str
    reason: str
    rows_checked: int = 0
    error_rows: int = 0
    issues: list[PreflightIssue] = Field(default_factory=list)

    _public_reason = field_validator("reason")(lambda v: scrub_urls(v))


# --- training ----------------------------------------------------------------------------


class TrainingStarted(EventPayload):
    world_size: int
    nodes: list[str]
    attempt: int = 1
    resumed_from_step: int | None = None


class TrainingProgress(EventPayload):
    step: int
    total_steps: int | None = None
    epoch: float | None = None
    loss: float | None = None
    learning_rate: float | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    samples_per_sec: float | None = None
    eta_seconds: float | None = None


class TrainingLog(EventPayload):
    node: str
    stream: Literal["stdout", "stderr"] = "stdout"
    lines: list[str]


class TrainingCompleted(EventPayload):
    model_version: str
    metrics: dict[str, float] = Field(default_factory=dict)
    digest: str
    #: True: a deployment of the model was created with the run's completion (the spec's
    #: ``deploy.enabled``) and the trainer starts it on this event; the run goes on to
    #: ``deploying``. None: a producer older than the field (read the spec instead).
    deploy: bool | None = None


class TrainingFailed(EventPayload):
    reason: str
    exit_code: int | None = None
    retryable: bool = False


# --- serving -----------------------------------------------------------------------------


class ModelDeployed(EventPayload):
    deployment_id: uuid.UUID
    endpoint: str
    model_version: str | None = None


class DeploymentFailed(EventPayload):
    reason: str
    deployment_id: uuid.UUID | None = None


class DeploymentStopped(EventPayload):
    """A deployment's servers were stopped and it no longer serves (trainer). ``reason``:
    ``stopped`` (a user's stop; ``by`` is who), ``deleted``, ``superseded`` (a newer
    deployment of the project became live), ``nodes released``. ``on_run_nodes``: it
    served from its run's nodes (the provisioner then releases them)."""

    deployment_id: uuid.UUID
    reason: str = "stopped"
    by: str | None = None
    on_run_nodes: bool = False


class DeploymentPromoted(EventPayload):
    """The project's live alias (``/api/projects/{id}/endpoint``) now points at
    ``deployment_id`` (trainer); ``previous_deployment_id`` served before. ``rollback``:
    the move went back to an earlier live deployment."""

    deployment_id: uuid.UUID
    previous_deployment_id: uuid.UUID | None = None
    rollback: bool = False


class DeploymentScaled(EventPayload):
    """How many of a deployment's servers run changed without a user's action (trainer):
    ``replicas`` 0 when it scaled to zero after its idle time (the model stays staged; the
    next request starts it again, a cold start), its configured replicas when a request or
    a restart of the trainer started it again. ``reason`` says which, for people."""

    deployment_id: uuid.UUID
    replicas: int = Field(ge=0)
    reason: str = ""


# --- identity and access ------------------------------------------------------------------


class SessionsRevoked(EventPayload):
    """Every access token of ``user_id`` issued before ``not_before`` is dead (logout,
    password change, refresh-token reuse, an admin's action). Published by auth; every
    gateway replica refuses such tokens and closes the user's WebSockets (4401)."""

    user_id: uuid.UUID
    not_before: datetime
    reason: str = "revoked"


class SigningKeyRevoked(EventPayload):
    """An admin revoked auth's signing key ``kid``: every token it signed is dead at once.
    Published by auth; every auth replica re-reads its keyring, and every gateway replica
    stops trusting the key (a JWKS fetched from a replica that has not heard yet cannot
    bring it back) and closes the WebSockets whose token it signed (4401)."""

    kid: str = Field(min_length=1, max_length=128)


class MembershipChanged(EventPayload):
    """``user_id``'s role in the project (envelope ``project_id``) changed; ``role`` None means
    removed. Published by the gateway so every replica re-authorises open WebSockets."""

    user_id: uuid.UUID
    role: str | None = None


_IDENTITY: tuple[type[EventPayload], ...] = (SessionsRevoked, SigningKeyRevoked, MembershipChanged)

_ALL: tuple[type[EventPayload], ...] = (
    ProjectCreated,
    RunRequested,
    RunCancelled,
    ProjectDeleted,
    ProvisioningProgress,
    NodesReady,
    NodesFailed,
    NodesReleased,
    NodeLost,
    NodesReplaced,
    FetchProgress,
    CachedRevisionUsed,
    ArtifactsCached,
    ArtifactsFailed,
    DatasetValidated,
    ValidationFailed,
    TrainingStarted,
    TrainingProgress,
    TrainingLog,
    TrainingCompleted,
    TrainingFailed,
    ModelDeployed,
    DeploymentFailed,
    DeploymentStopped,
    DeploymentPromoted,
    DeploymentScaled,
)

#: type name -> newest payload class.
EVENT_TYPES: dict[str, type[EventPayload]] = {cls.event_type(): cls for cls in (*_ALL, *_IDENTITY)}

#: Every event type that shows in a project's status stream (all but identity events).
STATUS_EVENT_TYPES: tuple[str, ...] = tuple(cls.event_type() for cls in _ALL)


class UnknownEventError(ValueError):
    """The envelope names a type or version this code cannot read."""


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}

F = TypeVar("F", bound=Upcaster)


def upcaster(event_type: str, from_version: int) -> Callable[[F], F]:
    """Register a function turning a ``from_version`` payload into ``from_version + 1``."""

    def register(fn: F) -> F:
        _UPCASTERS[(event_type, from_version)] = fn
        return fn

    return register


def parse_payload(envelope: Envelope) -> EventPayload:
    """Return the envelope's payload as the newest version of its event class.

    Raises :class:`UnknownEventError` for an unknown type, a version newer than this code,
    or an old version with no upcaster chain; pydantic's ``ValidationError`` for bad fields.
    """
    cls = EVENT_TYPES.get(envelope.type)
    if cls is None:
        raise UnknownEventError(f"unknown event type {envelope.type!r}")
    data, version = dict(envelope.payload), envelope.version
    if version > cls.__version__:
        raise UnknownEventError(f"{envelope.type} v{version} is newer than this code")
    while version < cls.__version__:
        step = _UPCASTERS.get((envelope.type, version))
        if step is None:
            raise UnknownEventError(f"no upcaster for {envelope.type} v{version}")
        data, version = step(data), version + 1
    return cls.model_validate(data)


def new_event(
    payload: EventPayload,
    *,
    project_id: uuid.UUID | None = None,
    run_id: uuid.UUID | None = None,
    cause: Envelope | None = None,
    traceparent: str | None = None,
) -> Envelope:
    """Wrap ``payload`` in an envelope; ``cause`` links correlation and causation ids."""
    new_id = uuid.uuid4()
    if cause is not None:
        project_id = project_id or cause.project_id
        run_id = run_id or cause.run_id
        traceparent = traceparent or cause.traceparent
    if traceparent is None:
        from shared.telemetry import current_traceparent

        traceparent = current_traceparent()
    return Envelope(
        id=new_id,
        type=payload.event_type(),
        version=payload.__version__,
        project_id=project_id,
        run_id=run_id,
        correlation_id=(cause.correlation_id or cause.id) if cause else new_id,
        causation_id=cause.id if cause else None,
        traceparent=traceparent,
        payload=payload.model_dump(mode="json"),
    )
