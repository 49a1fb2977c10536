"""Tables owned by the gateway service (names prefixed ``gateway_``).

``gateway_projects.last_seq`` is the per-project event counter: the event-log writer
increments it with ``UPDATE … RETURNING`` (a row lock held until commit), so seqs are
gapless and commit in order even with several gateway replicas on PostgreSQL.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.service.clock import utcnow

__all__ = [
    "AuditEntry",
    "Event",
    "Member",
    "Project",
    "Run",
    "ROLES",
    "SpecApproval",
    "TERMINAL_STATUSES",
]

ROLES = ("viewer", "editor", "owner")
TERMINAL_STATUSES = frozenset({"deployed", "succeeded", "failed", "cancelled"})


def _bigint() -> Any:
    return BigInteger().with_variant(Integer(), "sqlite")


class Project(SQLModel, table=True):
    __tablename__ = "gateway_projects"
    #: names are unique per owner (409 on create, rename and clone)
    __table_args__ = (Index("uq_gateway_projects_owner_name", "owner_id", "name", unique=True),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=200)
    spec: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    owner_id: uuid.UUID
    current_run_id: uuid.UUID | None = None
    run_count: int = 0
    last_seq: int = Field(default=0, sa_column=Column(_bigint(), nullable=False, default=0))
    #: who last changed the spec and when (None: before the audit trail existed — every
    #: requester then confirms the spec once)
    spec_changed_by: uuid.UUID | None = None
    spec_changed_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class SpecApproval(SQLModel, table=True):
    """The spec a member last wrote or approved (by hash, and the spec itself for diffs)."""

    __tablename__ = "gateway_spec_approvals"

    project_id: uuid.UUID = Field(primary_key=True)
    user_id: uuid.UUID = Field(primary_key=True)
    spec_hash: str = Field(max_length=64)
    spec: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    approved_at: datetime = Field(default_factory=utcnow)


class AuditEntry(SQLModel, table=True):
    """One entry of a project's audit trail; ``id`` orders the entries."""

    __tablename__ = "gateway_audit"
    __table_args__ = (Index("ix_gateway_audit_project_id", "project_id", "id"),)

    id: int | None = Field(
        default=None, sa_column=Column(_bigint(), primary_key=True, autoincrement=True)
    )
    project_id: uuid.UUID
    at: datetime = Field(default_factory=utcnow)
    action: str = Field(max_length=32)
    actor_id: uuid.UUID | None = None
    actor_email: str = Field(default="", max_length=320)
    spec_hash: str | None = Field(default=None, max_length=64)
    run_id: uuid.UUID | None = None
    run_number: int | None = None
    subject_id: uuid.UUID | None = None
    subject_email: str | None = Field(default=None, max_length=320)
    role: str | None = Field(default=None, max_length=16)


class Member(SQLModel, table=True):
    __tablename__ = "gateway_members"

    project_id: uuid.UUID = Field(primary_key=True)
    user_id: uuid.UUID = Field(primary_key=True, index=True)
    email: str = Field(default="", max_length=320)
    role: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow)


class Run(SQLModel, table=True):
    __tablename__ = "gateway_runs"
    __table_args__ = (UniqueConstraint("project_id", "number", name="uq_gateway_runs_number"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    project_id: uuid.UUID = Field(index=True)
    number: int
    status: str = Field(default="queued", max_length=16)
    spec: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    requested_by: uuid.UUID | None = None
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    progress: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    model_version: str | None = Field(default=None, max_length=200)
    deployment_id: uuid.UUID | None = None
    endpoint: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    preparing_at: datetime | None = None
    training_at: datetime | None = None
    deploying_at: datetime | None = None
    finished_at: datetime | None = None


class Event(SQLModel, table=True):
    """One stored status event; ``seq`` is gapless per project. ``event_id`` dedupes."""

    __tablename__ = "gateway_events"
    __table_args__ = (
        UniqueConstraint("event_id", name="uq_gateway_events_event_id"),
        Index("ix_gateway_events_run_id", "run_id", "seq"),
    )

    project_id: uuid.UUID = Field(primary_key=True)
    seq: int = Field(sa_column=Column(_bigint(), primary_key=True, autoincrement=False))
    event_id: uuid.UUID
    run_id: uuid.UUID | None = None
    type: str = Field(max_length=128)
    body: str = Field(sa_column=Column(Text, nullable=False))
    stored_at: datetime = Field(default_factory=utcnow)


class Invitation(SQLModel, table=True):
    """A pending offer of ``role`` on a project to ``email`` (``user_id`` when that email
    belongs to a registered user at the time). The invitee accepts (becomes a member) or
    declines; until then they have no access."""

    __tablename__ = "gateway_invitations"
    __table_args__ = (UniqueConstraint("project_id", "email", name="uq_gateway_invitations"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    project_id: uuid.UUID = Field(index=True)
    email: str = Field(max_length=320, index=True)
    user_id: uuid.UUID | None = Field(default=None, index=True)
    role: str = Field(max_length=16)
    invited_by: uuid.UUID
    invited_by_email: str = Field(default="", max_length=320)
    created_at: datetime = Field(default_factory=utcnow)
