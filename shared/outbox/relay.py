"""The outbox relay: committed outbox rows to the bus, in order, pipelined (the package
doc, :mod:`shared.outbox`, says what it guarantees)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from datetime import UTC
from typing import Any

from sqlalchemy import BigInteger, Connection, Row, Table, any_, bindparam, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ColumnElement

from shared.bus.base import Bus, StoredEvent, UnroutableError
from shared.db import Database, run_sync
from shared.events import Envelope
from shared.outbox.rows import OutboxRow
from shared.service.clock import utcnow

__all__ = ["OutboxRelay"]

log = logging.getLogger(__name__)

_OUTBOX: Table = OutboxRow.__table__  # type: ignore[attr-defined]
_IN_FLIGHT = 2  # batches awaiting their confirms at once in OutboxRelay.drain
_ASYNC_COMMIT = text("SET LOCAL synchronous_commit TO OFF")
# a claimed batch: the connection whose transaction holds it, and its rows
_Batch = tuple[Connection, Sequence[Row[Any]]]
_Publishing = asyncio.Task[list[BaseException | None]]


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

    One pass (:meth:`relay_once`) claims up to ``batch_size`` pending rows (SQL Core, no
    ORM), publishes their stored bytes with :meth:`Bus.publish_stored` (all frames in one
    write, all confirms in flight together, one deadline for the batch, no re-parse), then
    marks the confirmed ones sent in one statement. :meth:`drain` (what ``run`` does)
    publishes batch after batch, in order, with the database work beside the broker's:
    the next batch (rows after this one's) is claimed while this one is published, and
    this one is marked while the next is published. On PostgreSQL the rows stay locked
    (``FOR UPDATE SKIP LOCKED``) from claim to mark, so concurrent relays never publish
    the same row. On SQLite (one relay per service, embedded mode) the read transaction
    ends before publishing, so handlers committing meanwhile cannot make the mark fail.
    If the mark fails or the process dies after publishing, the rows stay pending and are
    published again: a duplicate (consumers dedupe with :func:`claim_inbox`), never a
    loss.

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
                await self.drain()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay for %s failed; retrying", self.service)
                await asyncio.sleep(1.0)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that
            # lands as the event is set, and the relay then never stops
            try:
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def relay_once(self) -> int:
        """Publish one batch of pending rows; returns how many were confirmed."""
        batch = await self._claim_next(None)
        if batch is None:
            return 0
        conn, rows = batch
        results = await self._publish(conn, rows)
        confirmed, stalled = await self._settle(conn, rows, results)
        if stalled:
            await asyncio.sleep(0.5)  # broker trouble: back off a little
        return confirmed

    async def drain(self) -> int:
        """Publish every pending row, batch after batch, in order; returns how many were
        confirmed.

        Pipelined, so neither the database nor the broker waits for the other: while one
        batch awaits its confirms the next is already sent (``_IN_FLIGHT`` batches at
        most; a later batch's messages always reach the broker after an earlier one's),
        the one after that is being claimed (rows after the last one claimed), and the
        previous one is being marked. Stops early when a batch's publishes all failed
        (broker trouble: the caller backs off); rows that failed are taken again by the
        next call. A cancelled drain lets its marks finish and rolls back the rest: those
        rows stay pending and unlocked (some may have been published: duplicates, which
        consumers drop)."""
        total = 0
        stalled = False
        claiming: asyncio.Task[_Batch | None] | None = asyncio.create_task(self._claim_next(None))
        in_flight: deque[tuple[Connection, Sequence[Row[Any]], _Publishing]] = deque()
        settling: asyncio.Task[tuple[int, bool]] | None = None
        try:
            while True:
                if claiming is not None and not stalled and len(in_flight) < _IN_FLIGHT:
                    batch = await claiming
                    claiming = None
                    if batch is not None:
                        conn, rows = batch
                        if len(rows) >= self.batch_size:  # more may be waiting, after these
                            claiming = asyncio.create_task(self._claim_next(rows[-1].seq))
                        publishing = asyncio.create_task(self._publish(conn, rows))
                        in_flight.append((conn, rows, publishing))
                        continue
                if not in_flight:
                    break
                conn, rows, publishing = in_flight.popleft()
                results = await publishing
                # every publish failed: broker trouble, send no more (the caller backs off)
                stalled = stalled or not any(result is None for result in results)
                previous = settling
                settling = asyncio.create_task(self._settle(conn, rows, results))
                if previous is not None:
                    total += (await previous)[0]
            if settling is not None:
                total += (await settling)[0]
                settling = None
        finally:
            if claiming is not None:
                await self._discard(claiming)
            # only on an exception or a cancel: batches sent but not settled roll back
            # (their rows stay pending; some may have been published: duplicates)
            for _, _, publishing in in_flight:
                publishing.cancel()
            await asyncio.gather(*(p for _, _, p in in_flight), return_exceptions=True)
            for conn, _, _ in in_flight:  # a publish that had finished left it open
                await run_sync(conn.close)
            if settling is not None and not settling.done():
                # let the mark finish: rows it marks sent are not published twice
                with contextlib.suppress(Exception):
                    await settling
        return total

    async def _claim_next(self, after: int | None) -> _Batch | None:
        """:meth:`_claim_batch` off the loop; a cancelled claim closes what it claimed."""
        claimed: list[_Batch] = []

        def claim() -> _Batch | None:
            batch = self._claim_batch(after)
            if batch is not None:
                claimed.append(batch)
            return batch

        try:
            return await run_sync(claim)
        except asyncio.CancelledError:
            for conn, _ in claimed:  # run_sync waited for the claim: it is here if made
                await run_sync(conn.close)
            raise

    async def _discard(self, claiming: asyncio.Task[_Batch | None]) -> None:
        """Give back a claim the drain will not publish (its rows stay pending)."""
        claiming.cancel()
        try:
            batch = await claiming
        except BaseException:  # cancelled (it closed its own connection) or failed
            return
        if batch is not None:
            await run_sync(batch[0].close)

    async def _publish(
        self, conn: Connection, rows: Sequence[Row[Any]]
    ) -> list[BaseException | None]:
        """Publish a claimed batch (all confirms in flight together); on an exception or a
        cancel the batch's transaction rolls back and its rows stay pending, unlocked."""
        try:
            return await self.bus.publish_stored([_stored(row) for row in rows])
        except BaseException:
            await run_sync(conn.close)
            raise

    async def _settle(
        self, conn: Connection, rows: Sequence[Row[Any]], results: list[BaseException | None]
    ) -> tuple[int, bool]:
        """Mark a published batch's outcome and end its transaction; returns (confirmed,
        whether the broker failed every publish of it)."""
        confirmed = [row.seq for row, err in zip(rows, results, strict=True) if err is None]
        failed = [(row, err) for row, err in zip(rows, results, strict=True) if err is not None]
        given_up = [row.seq for row, err in failed if self._give_up(row, err)]
        retry = [row.seq for row, _ in failed if row.seq not in given_up]
        await run_sync(self._finish, conn, sent=confirmed + given_up, retry=retry)
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
        return len(confirmed), bool(retry) and not confirmed

    def _claim_batch(self, after: int | None) -> _Batch | None:
        """A new connection and the rows it claimed (seq above ``after``, if given); None
        (the connection closed) when there are none. The caller ends it with
        :meth:`_finish` or ``close``."""
        conn = self.db.engine.connect()
        try:
            if self.db.is_postgres:
                # the mark's commit need not wait for its WAL flush: a mark lost in a crash
                # re-publishes its rows, the duplicate this relay already allows for
                conn.execute(_ASYNC_COMMIT)
            rows = self._claim(conn, after)
            if not rows:
                conn.close()
                return None
            if not self.db.is_postgres:
                conn.commit()  # SQLite: no row locks to keep; don't hold a snapshot
        except BaseException:
            conn.close()
            raise
        return conn, rows

    def _finish(self, conn: Connection, *, sent: list[int], retry: list[int]) -> None:
        """Mark a claimed batch's outcome, commit and close its connection."""
        try:
            self._mark(conn, sent=sent, retry=retry)
            conn.commit()
        finally:
            conn.close()

    def _claim(self, conn: Connection, after: int | None) -> Sequence[Row[Any]]:
        """Select (and on PostgreSQL lock) the oldest pending rows of this service."""
        table = _OUTBOX
        query = (
            select(
                table.c.seq,
                table.c.event_id,
                table.c.event_type,
                table.c.body,
                table.c.created_at,
                table.c.event_version,
                table.c.occurred_at,
                table.c.correlation_id,
                table.c.traceparent,
            )
            .where(table.c.service == self.service, table.c.sent_at.is_(None))
            .order_by(table.c.seq)
            .limit(self.batch_size)
        )
        if after is not None:
            query = query.where(table.c.seq > after)
        if self.db.is_postgres:
            query = query.with_for_update(skip_locked=True)
        return conn.execute(query).all()  # type: ignore[return-value]

    def _mark(self, conn: Connection, *, sent: list[int], retry: list[int]) -> None:
        """Record the outcome of a batch, one statement per outcome (the caller commits)."""
        table = _OUTBOX
        if sent:
            conn.execute(
                update(table).where(self._seq_in(sent)).values(sent_at=utcnow()),
                {"seqs": sent} if self.db.is_postgres else {},
            )
        if retry:
            conn.execute(
                update(table).where(self._seq_in(retry)).values(attempts=table.c.attempts + 1),
                {"seqs": retry} if self.db.is_postgres else {},
            )

    def _seq_in(self, seqs: list[int]) -> ColumnElement[bool]:
        """``seq`` is one of ``seqs``: on PostgreSQL one array parameter (``= ANY``), so
        the statement's text is the same for every batch and nothing is rendered per
        value; SQLite has no arrays (``IN``)."""
        if self.db.is_postgres:
            return _OUTBOX.c.seq == any_(bindparam("seqs", type_=ARRAY(BigInteger)))
        return _OUTBOX.c.seq.in_(seqs)

    def _give_up(self, row: Row[Any], error: BaseException) -> bool:
        if not isinstance(error, UnroutableError):
            return False
        created = row.created_at
        if created.tzinfo is None:  # SQLite returns naive UTC datetimes
            created = created.replace(tzinfo=UTC)
        return (utcnow() - created).total_seconds() >= self.unroutable_grace
