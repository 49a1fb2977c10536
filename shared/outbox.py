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
from typing import Any

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, Row, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel

from shared.bus.base import Bus, StoredEvent, UnroutableError
from shared.db import Database, run_sync
from shared.events import Envelope
from shared.service.clock import utcnow

__all__ = ["InboxRow", "OutboxRelay", "OutboxRow", "add_to_outbox", "claim_inbox"]

log = logging.getLogger(__name__)


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


def _stored(row: Row[Any]) -> StoredEvent:
    """The publishable form of a claimed row (rows staged before shared_0002 are parsed)."""
    if row.event_version is None or row.occurred_at is None:
        return StoredEvent.of(Envelope.from_bytes(row.body))
    occurred = row.occurred_at
    if occurred.tzinfo is None:  # SQLite returns naive UTC datetimes
        occurred = occurred.replace(tzinfo=UTC)
    return StoredEvent(
        event_id=row.event_id,
        event_type=row.event_type,
        version=row.event_version,
        body=row.body,
        occurred_at=occurred,
        correlation_id=row.correlation_id,
        traceparent=row.traceparent,
    )


class OutboxRelay:
    """Publishes a service's committed outbox rows to the bus.

    ``run`` loops until cancelled; ``notify`` wakes it after a commit so latency stays low,
    and a poll interval covers rows committed by other processes.

    One pass (:meth:`relay_once`) claims up to ``batch_size`` pending rows, publishes their
    stored bytes with :meth:`Bus.publish_stored` (all confirms in flight together, one
    deadline for the batch, no re-parse), then marks the confirmed ones sent. On PostgreSQL
    the rows stay locked (``FOR UPDATE SKIP LOCKED``)
    from claim to mark, so concurrent relays never publish the same row. On SQLite (one
    relay per service, embedded mode) the read transaction ends before publishing, so
    handlers committing meanwhile cannot make the mark fail. If the mark fails or the
    process dies after publishing, the rows stay pending and are published again: a
    duplicate (consumers dedupe with :func:`claim_inbox`), never a loss.

    A row no queue is bound for (:class:`UnroutableError`) is retried like any failure —
    its consumer may not have started yet — until it is ``unroutable_grace`` seconds old;
    then it is marked sent and logged as dropped, so it cannot hold up the outbox forever.
    """

    def __init__(
        self,
        db: Database,
        bus: Bus,
        *,
        service: str,
        batch_size: int = 200,
        poll_interval: float = 0.5,
        unroutable_grace: float = 600.0,
    ) -> None:
        self.db = db
        self.bus = bus
        self.service = service
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.unroutable_grace = unroutable_grace
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.published = 0

    def notify(self) -> None:
        """Wake the relay; safe from any thread (sync routes commit in worker threads, and
        ``asyncio.Event.set`` off the loop would not wake it before its next poll)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._wake.set()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()  # before the pass: a commit during it wakes the next one
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
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that
            # lands as the event is set, and the relay then never stops
            try:
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def relay_once(self) -> int:
        """Publish one batch of pending rows; returns how many were confirmed.

        The batch's session spans the publish (on PostgreSQL its transaction holds the row
        locks from claim to mark); its database steps run off the loop (``run_sync``)."""
        batch = await run_sync(self._claim_batch)
        if batch is None:
            return 0
        session, rows = batch
        try:
            results = await self.bus.publish_stored([_stored(row) for row in rows])
        except BaseException:
            await run_sync(session.close)  # rolls back: the rows stay pending, unlocked
            raise
        confirmed = [row.seq for row, err in zip(rows, results, strict=True) if err is None]
        failed = [(row, err) for row, err in zip(rows, results, strict=True) if err is not None]
        given_up = [row.seq for row, err in failed if self._give_up(row, err)]
        retry = [row.seq for row, _ in failed if row.seq not in given_up]
        await run_sync(self._settle, session, sent=confirmed + given_up, retry=retry)
        if given_up:
            log.error(
                "dropped %d outbox events of %s: no queue bound after %.0fs",
                len(given_up),
                self.service,
                self.unroutable_grace,
            )
        if retry:
            first_error = next(err for _, err in failed)
            log.warning("%d outbox publishes failed (%r); will retry", len(retry), first_error)
        self.published += len(confirmed)
        if retry and not confirmed:
            await asyncio.sleep(0.5)  # broker trouble: back off a little
        return len(confirmed)

    def _claim_batch(self) -> tuple[Session, Sequence[Row[Any]]] | None:
        """A new session and the rows it claimed; None (the session closed) when there are
        none. The caller ends the session with :meth:`_settle` or ``close``."""
        session = Session(self.db.engine, expire_on_commit=False)
        try:
            rows = self._claim(session)
            if not rows:
                session.close()
                return None
            if not self.db.is_postgres:
                session.commit()  # SQLite: no row locks to keep; don't hold a snapshot
        except BaseException:
            session.close()
            raise
        return session, rows

    def _settle(self, session: Session, *, sent: list[int], retry: list[int]) -> None:
        """Mark a claimed batch's outcome, commit and close its session."""
        try:
            self._mark(session, sent=sent, retry=retry)
            session.commit()
        finally:
            session.close()

    def _claim(self, session: Session) -> Sequence[Row[Any]]:
        """Select (and on PostgreSQL lock) the oldest pending rows of this service."""
        query = (
            select(  # type: ignore[call-overload,misc]
                OutboxRow.seq,
                OutboxRow.event_id,
                OutboxRow.event_type,
                OutboxRow.body,
                OutboxRow.created_at,
                OutboxRow.event_version,
                OutboxRow.occurred_at,
                OutboxRow.correlation_id,
                OutboxRow.traceparent,
            )
            .where(OutboxRow.service == self.service, OutboxRow.sent_at.is_(None))  # type: ignore[union-attr]
            .order_by(OutboxRow.seq)  # type: ignore[arg-type]
            .limit(self.batch_size)
        )
        if self.db.is_postgres:
            query = query.with_for_update(skip_locked=True)
        return session.execute(query).all()  # type: ignore[no-any-return]

    def _mark(self, session: Session, *, sent: list[int], retry: list[int]) -> None:
        """Record the outcome of a batch (the caller commits)."""
        if sent:
            session.execute(
                update(OutboxRow).where(OutboxRow.seq.in_(sent)).values(sent_at=utcnow())  # type: ignore[union-attr]
            )
        if retry:
            session.execute(
                update(OutboxRow)
                .where(OutboxRow.seq.in_(retry))  # type: ignore[union-attr]
                .values(attempts=OutboxRow.attempts + 1)
            )

    def _give_up(self, row: Row[Any], error: BaseException) -> bool:
        if not isinstance(error, UnroutableError):
            return False
        created = row.created_at
        if created.tzinfo is None:  # SQLite returns naive UTC datetimes
            created = created.replace(tzinfo=UTC)
        return (utcnow() - created).total_seconds() >= self.unroutable_grace
