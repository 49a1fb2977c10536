"""Transactional outbox and inbox.

Producer side: :func:`add_to_outbox` stages an envelope in the caller's session, so the
state change and its event commit together (or not at all). :class:`OutboxRelay` publishes
committed rows with many confirms in flight and marks them sent; several relays can run at
once (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), and a crash between publish and mark
re-publishes the row: a duplicate, never a loss.

Consumer side: :func:`claim_inbox` records an event id in the same session as the
handler's effect; it returns False when the event was already handled, so a redelivered
message is acknowledged without repeating its effect.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, Integer, LargeBinary, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel

from shared.bus.base import Bus
from shared.db import Database
from shared.events import Envelope

__all__ = ["InboxRow", "OutboxRelay", "OutboxRow", "add_to_outbox", "claim_inbox"]

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


class OutboxRow(SQLModel, table=True):
    __tablename__ = "outbox"

    seq: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    )
    event_id: uuid.UUID = Field(unique=True)
    service: str = Field(max_length=64)
    event_type: str = Field(max_length=128)
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=_now)
    sent_at: datetime | None = None
    attempts: int = 0


class InboxRow(SQLModel, table=True):
    __tablename__ = "inbox"

    service: str = Field(primary_key=True, max_length=64)
    event_id: uuid.UUID = Field(primary_key=True)
    event_type: str = Field(max_length=128)
    handled_at: datetime = Field(default_factory=_now)


def add_to_outbox(session: Session, envelope: Envelope, *, service: str) -> None:
    """Stage ``envelope`` for publishing when ``session`` commits."""
    session.add(
        OutboxRow(
            event_id=envelope.id,
            service=service,
            event_type=envelope.type,
            body=envelope.to_bytes(),
        )
    )


def claim_inbox(session: Session, envelope: Envelope, *, service: str) -> bool:
    """Record ``envelope`` as handled by ``service`` in ``session``.

    Returns False if it was handled before (the caller then does nothing and acks).
    The row commits with the caller's effect; a concurrent duplicate loses on the
    primary key at commit time and is retried by the bus, then found here.
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


class OutboxRelay:
    """Publishes a service's committed outbox rows to the bus.

    ``run`` loops until cancelled; ``notify`` wakes it after a commit so latency stays low,
    and a poll interval covers rows committed by other processes.
    """

    def __init__(
        self,
        db: Database,
        bus: Bus,
        *,
        service: str,
        batch_size: int = 200,
        poll_interval: float = 0.5,
    ) -> None:
        self.db = db
        self.bus = bus
        self.service = service
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self._wake = asyncio.Event()
        self.published = 0

    def notify(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                sent = await self.relay_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay for %s failed; retrying", self.service)
                sent = 0
                await asyncio.sleep(1.0)
            if sent >= self.batch_size:
                continue  # more may be waiting
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except TimeoutError:
                pass

    async def relay_once(self) -> int:
        """Publish one batch of pending rows; returns how many were confirmed."""
        with self.db.session() as session:
            query = (
                select(OutboxRow.seq, OutboxRow.body)  # type: ignore[call-overload]
                .where(OutboxRow.service == self.service, OutboxRow.sent_at.is_(None))  # type: ignore[union-attr]
                .order_by(OutboxRow.seq)  # type: ignore[arg-type]
                .limit(self.batch_size)
            )
            if self.db.is_postgres:
                query = query.with_for_update(skip_locked=True)
            rows: Sequence[tuple[int, bytes]] = session.execute(query).all()  # type: ignore[assignment]
            if not rows:
                session.rollback()
                return 0
            envelopes = [Envelope.from_bytes(body) for _, body in rows]
            # The row locks are held while publishing so a second relay skips these rows.
            results = await self.bus.publish_many(envelopes)
            confirmed = [seq for (seq, _), err in zip(rows, results, strict=True) if err is None]
            failed = [seq for (seq, _), err in zip(rows, results, strict=True) if err is not None]
            if confirmed:
                session.execute(
                    update(OutboxRow).where(OutboxRow.seq.in_(confirmed)).values(sent_at=_now())  # type: ignore[union-attr]
                )
            if failed:
                session.execute(
                    update(OutboxRow)
                    .where(OutboxRow.seq.in_(failed))  # type: ignore[union-attr]
                    .values(attempts=OutboxRow.attempts + 1)
                )
                first_error = next(err for err in results if err is not None)
                log.warning("%d outbox publishes failed (%r); will retry", len(failed), first_error)
            session.commit()
        self.published += len(confirmed)
        if failed and not confirmed:
            await asyncio.sleep(0.5)  # broker trouble: back off a little
        return len(confirmed)
