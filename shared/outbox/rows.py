"""The outbox and inbox rows, and the calls that stage and claim them in a caller's session
(the package doc, :mod:`shared.outbox`, says how they fit together)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel

from shared.events import Envelope
from shared.service.clock import utcnow

__all__ = ["InboxRow", "OutboxRow", "add_to_outbox", "claim_inbox"]


class OutboxRow(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "service", "sent_at", "seq"),)

    seq: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    event_id: uuid.UUID = Field(unique=True)
    service: str = Field(max_length=64)
    event_type: str = Field(max_length=128)
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
    attempts: int = 0
    # Routing fields (shared_0002): null only on rows staged before that migration.
    event_version: int | None = None
    occurred_at: datetime | None = None
    correlation_id: uuid.UUID | None = None
    traceparent: str | None = Field(default=None, max_length=128)


class InboxRow(SQLModel, table=True):
    __tablename__ = "inbox"

    service: str = Field(primary_key=True, max_length=64)
    event_id: uuid.UUID = Field(primary_key=True)
    event_type: str = Field(max_length=128)
    handled_at: datetime = Field(default_factory=utcnow)


def add_to_outbox(session: Session, envelope: Envelope, *, service: str) -> None:
    """Stage ``envelope`` for publishing when ``session`` commits."""
    session.add(
        OutboxRow(
            event_id=envelope.id,
            service=service,
            event_type=envelope.type,
            body=envelope.to_bytes(),
            event_version=envelope.version,
            occurred_at=envelope.occurred_at,
            correlation_id=envelope.correlation_id,
            traceparent=envelope.traceparent,
        )
    )


def claim_inbox(session: Session, envelope: Envelope, *, service: str) -> bool:
    """Record ``envelope`` as handled by ``service`` in ``session``.

    Returns False if it was handled before (the caller then does nothing and acks).
    The row commits with the caller's effect, so a handler that fails before its commit
    leaves no trace and the redelivery does the work. Call it first in the session (its
    flush would report other pending rows' conflicts as a duplicate) and do not await
    between it and the commit: on PostgreSQL a concurrent duplicate waits on the row lock
    until this transaction ends, then sees the committed row (False) or claims it.
    """
    existing = session.get(InboxRow, (service, envelope.id))
    if existing is not None:
        return False
    session.add(InboxRow(service=service, event_id=envelope.id, event_type=envelope.type))
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        return False
    return True
