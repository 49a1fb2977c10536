"""Group commit for the event log.

Every status event costs one transaction; on PostgreSQL a commit waits for the WAL flush,
so one event per commit caps the log at a few hundred events per second. The gateway's
queue is therefore consumed with a larger prefetch and each handler call only *submits*
its event here and waits: :class:`LogWriter` appends everything submitted meanwhile, in
submission order, in one transaction, then releases the waiting handlers (which ack).

Order: handlers submit synchronously in the order the bus delivers (no await before
``submit``), and batches are written one after another, so the log keeps delivery order.
An event is acknowledged only after the transaction holding it committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from services.gateway.eventlog import Frame, append_many
from shared.db import Database, run_sync
from shared.events import Envelope

__all__ = ["LogWriter"]

log = logging.getLogger(__name__)


class LogWriter:
    def __init__(
        self, db: Database, *, on_stored: Callable[[Frame], None], max_batch: int = 500
    ) -> None:
        self._db = db
        self._on_stored = on_stored
        self.max_batch = max_batch
        self._pending: list[tuple[Envelope, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self.batches = 0

    async def submit(self, envelope: Envelope) -> None:
        """Store ``envelope``; returns once it is committed (or raises why not)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((envelope, future))
        self._wake.set()
        await future

    async def run(self) -> None:
        """Write batches until cancelled (a runtime background task)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                await self._write(batch)

    async def _write(self, batch: list[tuple[Envelope, asyncio.Future[None]]]) -> None:
        try:
            frames = await run_sync(append_many, self._db, [e for e, _ in batch])
        except Exception as exc:  # each handler raises it: the bus retries each message
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self.batches += 1
        for frame in frames:
            if frame is not None:
                try:
                    self._on_stored(frame)
                except Exception:  # live fan-out is best effort: clients backfill from the log
                    log.exception("fan-out of event seq %s failed", frame.seq)
        for _, future in batch:
            if not future.done():
                future.set_result(None)
