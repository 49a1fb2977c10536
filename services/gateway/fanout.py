"""Fan-out of stored events to the WebSocket clients of this gateway process.

Only stored events are sent, each with its log ``seq``, so every client sees one order.
Two paths bring new events to a process's :class:`Hub`:

- the event-log writer of this process calls :meth:`Hub.dispatch` right after its commit;
- :meth:`Hub.poll_forever` reads ``last_seq`` of the watched projects every
  ``poll_interval`` and dispatches events stored by other gateway processes (the shared
  ``gateway`` queue has competing consumers, so another replica may be the writer).

Each :class:`Connection` keeps, per subscription, the last seq it sent. A frame at or below
it is a duplicate and skipped; a frame beyond the next seq means the gap is read from the
log first. So the switch from backfill to live, two writers and the poller can neither
lose nor repeat an event. Each connection has a bounded send queue: when it is full the
client is slow and is dropped (close 1013), never stalling the writer or other clients.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from services.gateway.eventlog import Frame, events_after, frame_text, latest_seqs
from shared.db import Database

__all__ = ["Connection", "Hub", "Subscription"]

log = logging.getLogger(__name__)

CLOSE_SLOW = 1013  # "try again later": the client could not keep up
_PAGE = 500

Send = Callable[[str], Awaitable[None]]
Close = Callable[[int], Awaitable[None]]


@dataclass(eq=False)
class Subscription:
    """One client's subscription to one project."""

    project_id: uuid.UUID
    last_sent: int
    pending: list[Frame] | None = field(default_factory=list)  # live frames during setup


@dataclass(frozen=True)
class _Control:
    text: str


@dataclass(frozen=True)
class _CatchUp:
    sub: Subscription
    until: int


_Item = _Control | _CatchUp | tuple[Subscription, Frame]


class Connection:
    """One WebSocket client: a bounded queue drained in order by :meth:`run`."""

    def __init__(
        self,
        *,
        send: Send,
        close: Close,
        db: Database,
        queue_size: int,
        ping_interval: float,
        send_timeout: float = 10.0,
        on_sent: Callable[[int], None] = lambda n: None,
        on_drop: Callable[[Connection], None] = lambda conn: None,
    ) -> None:
        self._raw_send = send
        self._close = close
        self._db = db
        self.queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=queue_size)
        self.ping_interval = ping_interval
        self.send_timeout = send_timeout
        self.subs: dict[uuid.UUID, Subscription] = {}
        self.dropped = False
        self._on_sent = on_sent
        self._on_drop = on_drop
        self._task: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None

    # -- called from the hub and the receive loop (never await) -----------------------

    def offer(self, item: _Item) -> None:
        if self.dropped:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.drop(CLOSE_SLOW)

    def deliver(self, frame: Frame) -> None:
        sub = self.subs.get(frame.project_id)
        if sub is None:
            return
        if sub.pending is not None:
            sub.pending.append(frame)
        elif frame.seq > sub.last_sent:
            self.offer((sub, frame))

    def control(self, message: dict[str, Any]) -> None:
        self.offer(_Control(json.dumps(message)))

    def activate(self, sub: Subscription, *, latest: int) -> None:
        """Finish a subscription: reply, backfill up to ``latest``, then the buffered live."""
        sub.last_sent = min(sub.last_sent, latest)
        pending, sub.pending = sub.pending or [], None
        self.control({"type": "subscribed", "project_id": str(sub.project_id), "seq": latest})
        self.offer(_CatchUp(sub, latest))
        for frame in pending:
            if frame.seq > latest:
                self.offer((sub, frame))

    def drop(self, code: int) -> None:
        """Close the client without waiting (it is slow or misbehaving)."""
        if self.dropped:
            return
        self.dropped = True
        log.info("dropping WebSocket client (code %d)", code)
        self._on_drop(self)  # no more frames for it, at once
        if self._task is not None:
            self._task.cancel()
        self._closing = asyncio.ensure_future(self._close(code))

    # -- the sender -------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.ensure_future(self.run())

    async def stop(self) -> None:
        """Stop sending; a close already under way (a drop) is given time to finish."""
        self.dropped = True
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._closing is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._closing), 5.0)
            except (TimeoutError, Exception):
                self._closing.cancel()

    async def run(self) -> None:
        next_ping = time.monotonic() + self.ping_interval
        while True:
            try:
                if self.queue.empty():  # only an idle wait pays for a timeout
                    async with asyncio.timeout(max(0.0, next_ping - time.monotonic())):
                        item = await self.queue.get()
                else:
                    item = self.queue.get_nowait()
            except TimeoutError:
                await self._send('{"type":"ping"}')
                next_ping = time.monotonic() + self.ping_interval
                continue
            if isinstance(item, _Control):
                await self._send(item.text)
            elif isinstance(item, _CatchUp):
                await self._catch_up(item.sub, item.until)
            else:
                sub, frame = item
                if self.subs.get(sub.project_id) is not sub or frame.seq <= sub.last_sent:
                    continue  # unsubscribed since, or already sent
                if frame.seq > sub.last_sent + 1:
                    await self._catch_up(sub, frame.seq - 1)
                await self._send(frame.text)
                sub.last_sent = frame.seq
                self._on_sent(1)
            if time.monotonic() >= next_ping:
                await self._send('{"type":"ping"}')
                next_ping = time.monotonic() + self.ping_interval

    async def _send(self, text: str) -> None:
        """Send one frame; a client that does not take it within ``send_timeout`` is slow."""
        try:
            async with asyncio.timeout(self.send_timeout):  # no extra task, unlike wait_for
                await self._raw_send(text)
        except TimeoutError:
            self.drop(CLOSE_SLOW)
            raise asyncio.CancelledError from None

    async def _catch_up(self, sub: Subscription, until: int) -> None:
        """Send stored events ``last_sent < seq <= until`` of ``sub`` from the log."""
        while sub.last_sent < until and self.subs.get(sub.project_id) is sub:
            rows = await asyncio.to_thread(
                events_after,
                self._db,
                sub.project_id,
                after=sub.last_sent,
                until=until,
                limit=_PAGE,
            )
            if not rows:
                return  # the project's events are gone (deleted)
            for seq, body in rows:
                await self._send(frame_text(seq, body))
                sub.last_sent = seq
            self._on_sent(len(rows))


class Hub:
    """Per process: which connections watch which project, and what was dispatched."""

    def __init__(self, db: Database, *, poll_interval: float) -> None:
        self._db = db
        self.poll_interval = poll_interval
        self._watchers: dict[uuid.UUID, set[Connection]] = {}
        self._known: dict[uuid.UUID, int] = {}

    @property
    def connections(self) -> int:
        return len({c for conns in self._watchers.values() for c in conns})

    def watch(self, conn: Connection, project_id: uuid.UUID) -> None:
        self._watchers.setdefault(project_id, set()).add(conn)

    def known(self, project_id: uuid.UUID, latest: int) -> None:
        """Start tracking ``project_id`` at ``latest`` if it is not tracked yet."""
        self._known.setdefault(project_id, latest)

    def unwatch(self, conn: Connection, project_id: uuid.UUID) -> None:
        conns = self._watchers.get(project_id)
        if conns is None:
            return
        conns.discard(conn)
        if not conns:
            del self._watchers[project_id]
            self._known.pop(project_id, None)

    def unwatch_all(self, conn: Connection) -> None:
        for project_id in list(conn.subs):
            self.unwatch(conn, project_id)

    def dispatch(self, frame: Frame) -> None:
        """Hand a committed event to every connection watching its project."""
        conns = self._watchers.get(frame.project_id)
        if not conns:
            return
        if frame.seq > self._known.get(frame.project_id, 0):
            self._known[frame.project_id] = frame.seq
        for conn in list(conns):
            conn.deliver(frame)

    async def poll_once(self) -> int:
        """Dispatch events other processes stored since the last look; returns how many."""
        watched = list(self._watchers)
        if not watched:
            return 0
        latest = await asyncio.to_thread(latest_seqs, self._db, watched)
        sent = 0
        for project_id, seq in latest.items():
            known = self._known.get(project_id)
            if known is None or seq <= known:
                continue
            rows = await asyncio.to_thread(
                events_after, self._db, project_id, after=known, until=seq, limit=_PAGE
            )
            for row_seq, body in rows:
                self.dispatch(Frame(project_id, row_seq, frame_text(row_seq, body)))
            sent += len(rows)
        return sent

    async def poll_forever(self) -> None:
        while True:
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event poll failed; retrying")
            await asyncio.sleep(self.poll_interval)
