"""Tables owned by the trainer service (names prefixed ``trainer_``).

``trainer_runs`` is the per-run state machine (see :mod:`services.trainer.runs`);
``trainer_checkpoints`` the stored checkpoints of a run; ``trainer_models`` the model
registry; ``trainer_deployments`` the inference servers (watched under a lease);
``trainer_project_endpoints`` each project's live alias (which deployment its
``/endpoint`` serves, and the ones before it for roll back); ``trainer_blobs`` the store
blobs the trainer created (see :mod:`services.trainer.retention`);
``trainer_store_naming`` one-time steps done on the blob references (keyed names,
:mod:`services.trainer.naming`). Plaintext never lands here: artifacts are referenced by
their manifest key in the encrypted store.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.service.clock import utcnow

__all__ = [
    "Checkpoint",
    "CreatedBlob",
    "Deployment",
    "ModelVersion",
    "ProjectEndpoint",
    "Run",
    "StoreNaming",
]


class Run(SQLModel, table=True):
    """One training run: its inputs (spec, nodes, artifacts) and where it stands."""

    __tablename__ = "trainer_runs"

    run_id: uuid.UUID = Field(primary_key=True)
    project_id: uuid.UUID | None = None
    #: the user whose secrets the run gets (ProjectCreated.owner_id / RunRequested.requested_by)
    owner_id: str | None = Field(default=None, max_length=64)
    state: str = Field(default="waiting", max_length=32, index=True)
    spec: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    spec_hash: str | None = Field(default=None, max_length=64)
    nodes: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))
    env: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    artifacts: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))
    attempt: int = 0
    last_step: int = 0
    reason: str | None = Field(default=None, max_length=2000)
    owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = None
    processes: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    nodes_released: bool = False
    workspace_cleaned: bool = False
    model_id: uuid.UUID | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Checkpoint(SQLModel, table=True):
    """A checkpoint stored encrypted (one manifest per checkpoint)."""

    __tablename__ = "trainer_checkpoints"
    __table_args__ = (UniqueConstraint("run_id", "step", name="uq_trainer_checkpoints_run_step"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: uuid.UUID = Field(index=True)
    step: int
    manifest_key: str = Field(max_length=64)
    size_bytes: int = Field(default=0, sa_type=BigInteger)  # BIGINT in trainer_0001
    created_at: datetime = Field(default_factory=utcnow)


class ModelVersion(SQLModel, table=True):
    """A trained model in the registry, with its lineage."""

    __tablename__ = "trainer_models"
    __table_args__ = (UniqueConstraint("project_id", "version", name="uq_trainer_models_version"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    project_id: uuid.UUID = Field(index=True)
    run_id: uuid.UUID
    version: int
    task: str = Field(max_length=64)
    manifest_key: str = Field(max_length=64)
    size_bytes: int = Field(default=0, sa_type=BigInteger)  # BIGINT in trainer_0001
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    lineage: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)


class Deployment(SQLModel, table=True):
    """An inference server for a model version on a node."""

    __tablename__ = "trainer_deployments"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    project_id: uuid.UUID = Field(index=True)
    model_id: uuid.UUID
    run_id: uuid.UUID | None = None
    status: str = Field(default="starting", max_length=32, index=True)
    node: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    workdir: str | None = Field(default=None, max_length=1000)
    port: int | None = None
    pid: int | None = None
    restarts: int = 0
    reason: str | None = Field(default=None, max_length=2000)
    endpoint: str | None = Field(default=None, max_length=300)
    owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = None
    #: server processes behind the deployment (round-robin); ``procs`` holds one
    #: ``{"pid", "port"}`` per started replica (``pid``/``port`` above are replica 0's)
    replicas: int = 1
    procs: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))
    #: scale to zero after this many seconds without a request (None: never)
    idle_timeout_s: int | None = None
    last_request_at: datetime | None = None
    #: once running, become the project's live alias (and stop the project's other
    #: deployments unless ``keep_previous``); ``rollback``: the alias move is a roll back
    promote_on_ready: bool = False
    keep_previous: bool = False
    rollback: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ProjectEndpoint(SQLModel, table=True):
    """A project's live alias: the deployment ``/api/projects/{id}/endpoint`` forwards to,
    and the earlier live ones (oldest first) that roll back returns to."""

    __tablename__ = "trainer_project_endpoints"

    project_id: uuid.UUID = Field(primary_key=True)
    deployment_id: uuid.UUID | None = None
    history: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    updated_at: datetime = Field(default_factory=utcnow)


class CreatedBlob(SQLModel, table=True):
    """A store blob this trainer created (absent before it stored a checkpoint or model).

    Only such blobs may be deleted when checkpoints are pruned: a blob that was already in
    the store belongs to someone else too (a fetched artifact, another manifest).
    """

    __tablename__ = "trainer_blobs"

    digest: str = Field(primary_key=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)


class StoreNaming(SQLModel, table=True):
    """A one-time step on this database's blob references, done (see services.trainer.naming)."""

    __tablename__ = "trainer_store_naming"

    step: str = Field(primary_key=True, max_length=64)
    done_at: datetime = Field(default_factory=utcnow)
