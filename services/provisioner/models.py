"""Tables owned by the provisioner service (names prefixed ``provisioner_``).

``provisioner_runs`` is the job state machine of one run's nodes; every transition goes
through :func:`services.provisioner.service.transition`. Its ``lease_holder``/``lease_until``
say which replica works on the run (:mod:`services.provisioner.lease`).
``provisioner_locks`` keeps the resolved lock of each environment input, so a spec is
resolved once and every later run of it gets a byte-identical lock.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Text
from sqlmodel import Field, SQLModel

from shared.service.clock import utcnow
from shared.service.states import Transitions

__all__ = [
    "ACTIVE_STATES",
    "CloudAccess",
    "CloudAccessChange",
    "EnvLock",
    "NODES",
    "Preflight",
    "RunNodes",
    "RunState",
    "STATES",
]


class RunState(StrEnum):
    """The state of one run's nodes (the strings stored in ``provisioner_runs.state``).

    requested → provisioning → ready → releasing → released; failed ends a run's nodes
    (its partial nodes are already torn down when the row says failed). An LLM task's run
    starts in validating: it waits for the fetcher's pre-flight check (DatasetValidated →
    requested; ValidationFailed → failed, nothing created). A ready run whose node was lost
    (NodeLost) is ``replacing`` until NodesReplaced.
    """

    VALIDATING = "validating"
    REQUESTED = "requested"
    PROVISIONING = "provisioning"
    READY = "ready"
    REPLACING = "replacing"
    RELEASING = "releasing"
    RELEASED = "released"
    FAILED = "failed"


_R = RunState
#: Every move :meth:`services.provisioner.service.Provisioner.transition` makes. A
#: provisioning job may be resumed (provisioning → provisioning, one more attempt); a
#: failure is recorded whatever the state (a job failing after its run was released).
NODES = Transitions(
    RunState,
    {
        _R.VALIDATING: {_R.REQUESTED, _R.FAILED, _R.RELEASED},
        _R.REQUESTED: {_R.PROVISIONING, _R.RELEASING, _R.FAILED},
        _R.PROVISIONING: {_R.PROVISIONING, _R.READY, _R.RELEASING, _R.FAILED},
        _R.READY: {_R.REPLACING, _R.RELEASING, _R.FAILED},
        _R.REPLACING: {_R.READY, _R.RELEASING, _R.FAILED},
        _R.RELEASING: {_R.RELEASED, _R.FAILED},
        _R.RELEASED: {_R.FAILED},
        _R.FAILED: {_R.FAILED},
    },
)
STATES = tuple(s.value for s in RunState)
ACTIVE_STATES = frozenset({"requested", "provisioning", "ready", "replacing", "releasing"})


class RunNodes(SQLModel, table=True):
    __tablename__ = "provisioner_runs"

    run_id: uuid.UUID = Field(primary_key=True)
    project_id: uuid.UUID = Field(index=True)
    owner_id: uuid.UUID | None = None
    provider: str = Field(max_length=16)
    spec: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    state: str = Field(default="requested", max_length=16, index=True)
    nodes: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    env: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    lock_hash: str | None = Field(default=None, max_length=64)
    lock: str | None = Field(default=None, sa_column=Column(Text))
    error: str | None = Field(default=None, sa_column=Column(Text))
    failed_step: str | None = Field(default=None, max_length=64)
    training: bool = False  # TrainingStarted seen, no end yet: never idle
    serving: bool = False  # kept after TrainingCompleted for a deployment
    release_reason: str | None = Field(default=None, max_length=64)
    attempts: int = 0
    #: whose cloud credentials created the nodes ('user' | 'platform'; None: not billed)
    credential_source: str | None = Field(default=None, max_length=16)
    #: USD/hour of all the run's nodes (billed providers with a known price)
    hourly_usd: float | None = None
    #: index in ``spec.resources.choices()`` of the provider/instance type in use
    choice: int = 0
    #: nodes replaced after a loss (NodeLost), bounded by AIDP_MAX_NODE_REPLACEMENTS
    replacements: int = 0
    #: records of every node lost, each with ``pending`` (True until replaced)
    lost: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))
    #: moved to the next choice after running out of memory (retry_larger_on_oom: once)
    grown: bool = False
    #: the replica working on the run (:mod:`services.provisioner.lease`); None: free
    lease_holder: str | None = Field(default=None, max_length=64)
    #: when that lease expires unless renewed (another replica may then take the run over)
    lease_until: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    last_active_at: datetime = Field(default_factory=utcnow)


class Preflight(SQLModel, table=True):
    """The outcome of a run's pre-flight check, kept whichever of it and the run's
    ProjectCreated/RunRequested this service sees first."""

    __tablename__ = "provisioner_preflight"

    run_id: uuid.UUID = Field(primary_key=True)
    passed: bool
    reason: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow)


class EnvLock(SQLModel, table=True):
    __tablename__ = "provisioner_locks"

    input_key: str = Field(primary_key=True, max_length=64)  # sha256 of the resolution input
    lock_hash: str = Field(max_length=64)  # sha256 of the lock text
    lock: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class CloudAccess(SQLModel, table=True):
    """A user an admin allowed to provision on the platform's cloud credentials (besides
    those named by ``AIDP_CLOUD_PLATFORM_CREDENTIAL_USERS``)."""

    __tablename__ = "provisioner_cloud_access"

    user_id: uuid.UUID = Field(primary_key=True)
    email: str | None = Field(default=None, max_length=320)  # for display only
    granted_by: uuid.UUID | None = None
    granted_at: datetime = Field(default_factory=utcnow)


class CloudAccessChange(SQLModel, table=True):
    """Audit trail of the admin list: who replaced it when, the lists before and after."""

    __tablename__ = "provisioner_cloud_access_changes"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor_id: uuid.UUID | None = None
    before: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    after: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
