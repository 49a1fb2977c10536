"""Fan-out of stored events to the WebSocket clients of this gateway process.

Only stored events are sent, each with its log ``seq``, so every client sees one order.
Two paths bring new events to a process's :class:`Hub`:

- the event-log writer of this process calls :meth:`Hub.dispatch` right after its commit;
- :meth:`Hub.poll_forever` reads ``last_seq`` of the watched projects every
  ``poll_interval`` and dispatches events stored by other gateway processes (the shared
  ``gateway`` queue has competing consumers, so another replica may be the writer).

The hub hands frames on in seq order without gaps, per project: with several replicas
each stores only some of a project's events, so a frame of this process may follow seqs
another replica stored. Such a frame is held while ONE read of the log (on the event
loop, ``shared.db.aio``) fetches the missing seqs for every connection of the process —
they are committed already, since a seq is taken under the project row's lock held until
commit — and the poller is left with projects this process stores nothing of. Each
:class:`Connection` also keeps, per subscription, the last seq it sent: a frame at or
below it is a duplicate and skipped; one beyond the next seq (a subscription's start)
means the gap is read from the log first. So the switch from backfill to live, two
writers and the poller can neither lose nor repeat an event.

Cost at volume (issue 14): the hub hands each connection all frames of one loop turn at
once (:meth:`Hub.dispatch` only collects; one flush per turn), each frame's text is built
once for every client, and a connection's sender writes everything queued in one go —
one WebSocket message per frame, or ONE ``{"type":"batch","frames":[...]}`` message for a
client that asked for batching. Sends are awaited (socket back-pressure), with no timer
per frame: each connection has a bounded send queue, and a client whose queue overflows,
or whose socket has not taken a send for ``send_timeout`` seconds (checked by the hub's
poll loop), is dropped with close 1013 and resumes from its last seq; it never stalls the
writer or other clients. A subscription may ask to coalesce ``TrainingProgress``: then
only the latest progress of a run still waiting in the queue is sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.gateway.eventlog import (
    Frame,
    events_after_async,
    frame_text,
    frames_after_async,
    latest_seqs_async,
)
from shared.db import Database
from shared.events import TrainingProgress

__all__ = ["Connection", "Hub", "Subscription", "batch_text"]

log = logging.getLogger(__name__)

CLOSE_SLOW = 1013  # "try again later": the client could not keep up
_PAGE = 500
_HOLD_MAX = 5000  # frames held per project beyond a gap
# one batch message stays well under clients' default 1 MiB message limit
_BATCH_FRAMES = 512
_BATCH_BYTES = 256 * 1024
_PING = '{"type":"ping"}'
_PROGRESS = TrainingProgress.event_type()

Send = Callable[[str], Awaitable[None]]
Close = Callable[[int], Awaitable[None]]


def batch_text(texts: list[str]) -> str:
    """Several server messages as ONE message: ``{"type":"batch","frames":[...]}``.

    Each text is a JSON object already, so the batch is joined, never re-serialised."""
    return '{"type":"batch","frames":[' + ",".join(texts) + "]}"


@dataclass(eq=False)
class Subscription:
    """One client's subscription to one project."""

    project_id: uuid.UUID
    last_sent: int
    pending: list[Frame] | None = field(default_factory=list)  # live frames during setup
    coalesce: bool = False  # keep only the latest queued TrainingProgress of each run
    progress: dict[uuid.UUID, _Live] = field(default_factory=dict)  # run -> queued entry


@dataclass(frozen=True)
class _Control:
    text: str


@dataclass(frozen=True)
class _CatchUp:
    sub: Subscription
    until: int


class _Live:
    """A live frame in a connection's queue; ``superseded`` once a newer progress of the
    same run is queued behind it (coalescing): it is then skipped, its seq accounted for."""

    __slots__ = ("frame", "sub", "superseded")

    def __init__(self, sub: Subscription, frame: Frame) -> None:
        self.sub = sub
        self.frame = frame
        self.superseded = False


class FrameRun:
    """Frames of one project handed on together (one loop turn of the hub), shared by every
    connection: the texts, their size, and the batch message of all of them are built once."""

    __slots__ = ("_joined", "contiguous", "first", "frames", "last", "size", "texts")

    def __init__(self, frames: Sequence[Frame]) -> None:
        self.frames = frames
        self.texts = [f.text for f in frames]
        self.size = sum(map(len, self.texts))
        self.first, self.last = frames[0].seq, frames[-1].seq
        self.contiguous = all(b.seq == a.seq + 1 for a, b in zip(frames, frames[1:], strict=False))
        self._joined: str | None = None

    @property
    def joined(self) -> str:
        if self._joined is None:
            self._joined = batch_text(self.texts)
        return self._joined


@dataclass(frozen=True)
class _Run:
    sub: Subscription
    run: FrameRun


_Item = _Control | _CatchUp | _Live | _Run


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
        self._items: deque[_Item] = deque()
        self._queued = 0  # items in _items that will be sent (superseded ones are not)
        self._wake = asyncio.Event()
        self.queue_size = queue_size
        self.ping_interval = ping_interval
        self.send_timeout = send_timeout
        self.subs: dict[uuid.UUID, Subscription] = {}
        self.batch = False  # several queued messages go out as one batch message
        self.dropped = False
        self.sending_since: float | None = None  # loop time of the send under way
        self._ping_wanted = False
        self._ping_timer: asyncio.TimerHandle | None = None
        self._on_sent = on_sent
        self._on_drop = on_drop
        self._task: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        """Messages waiting to be sent."""
        return self._queued

    # -- called from the hub and the receive loop (never await) -----------------------

    def offer(self, item: _Item, weight: int = 1) -> None:
        """Queue ``item`` (``weight`` messages); a full queue drops the client (1013)."""
        if self.dropped:
            return
        if self._queued >= self.queue_size:
            self.drop(CLOSE_SLOW)
            return
        self._items.append(item)
        self._queued += weight
        self._wake.set()

    def deliver(self, frame: Frame) -> None:
        self.deliver_many(frame.project_id, (frame,))

    def deliver_many(
        self, project_id: uuid.UUID, frames: Sequence[Frame], run: FrameRun | None = None
    ) -> None:
        """Queue ``frames`` (of ``project_id``, in seq order) for its subscription;
        ``run`` is the same frames prepared once for every connection."""
        sub = self.subs.get(project_id)
        if sub is None or not frames:
            return
        if sub.pending is not None:
            sub.pending.extend(frames)
            return
        if not sub.coalesce:
            run = run or FrameRun(frames)
            if run.last > sub.last_sent:
                self.offer(_Run(sub, run), len(frames))
            return
        for frame in frames:
            if self.dropped:
                return
            if frame.seq > sub.last_sent:
                self._queue_live(sub, frame)

    def _queue_live(self, sub: Subscription, frame: Frame) -> None:
        entry = _Live(sub, frame)
        if sub.coalesce and frame.event_type == _PROGRESS and frame.run_id is not None:
            previous = sub.progress.get(frame.run_id)
            if previous is not None:
                if previous.frame.seq >= frame.seq:
                    return  # a duplicate or an older one (the poller after the writer)
                previous.superseded = True
                self._queued -= 1
            sub.progress[frame.run_id] = entry
        self.offer(entry)

    def control(self, message: dict[str, Any]) -> None:
        self.offer(_Control(json.dumps(message)))

    def activate(self, sub: Subscription, *, latest: int) -> None:
        """Finish a subscription: reply, backfill up to ``latest``, then the buffered live."""
        sub.last_sent = min(sub.last_sent, latest)
        pending, sub.pending = sub.pending or [], None
        self.control({"type": "subscribed", "project_id": str(sub.project_id), "seq": latest})
        self.offer(_CatchUp(sub, latest))
        self.deliver_many(sub.project_id, [f for f in pending if f.seq > latest])

    def drop(self, code: int) -> None:
        """Close the client without waiting (it is slow or misbehaving)."""
        if self.dropped:
            return
        self.dropped = True
        log.info("dropping WebSocket client (code %d)", code)
        self._on_drop(self)  # no more frames for it, at once
        self._cancel_ping()
        if self._task is not None:
            self._task.cancel()
        self._closing = asyncio.ensure_future(self._close(code))

    def stalled(self, now: float) -> bool:
        """Whether a send has waited for the client's socket longer than ``send_timeout``."""
        return self.sending_since is not None and now - self.sending_since > self.send_timeout

    # -- the sender -------------------------------------------------------------------

    def start(self) -> None:
        self._arm_ping()
        self._task = asyncio.ensure_future(self.run())

    async def stop(self) -> None:
        """Stop sending; a close already under way (a drop) is given time to finish."""
        self.dropped = True
        self._cancel_ping()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._closing is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._closing), 5.0)
            except (TimeoutError, Exception):
                self._closing.cancel()

    def _arm_ping(self) -> None:
        loop = asyncio.get_running_loop()
        self._ping_timer = loop.call_later(self.ping_interval, self._ping_due)

    def _ping_due(self) -> None:
        if self.dropped:
            return
        self._ping_wanted = True
        self._wake.set()
        self._arm_ping()

    def _cancel_ping(self) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None

    async def run(self) -> None:
        """Send what is queued, all of it at once, until cancelled."""
        out: list[str] = []
        while True:
            if not self._items and not self._ping_wanted:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._ping_wanted:
                self._ping_wanted = False
                out.append(_PING)
            size = sent = 0
            while self._items and len(out) < _BATCH_FRAMES and size < _BATCH_BYTES:
                item = self._items.popleft()
                if isinstance(item, _Live):
                    if item.superseded:
                        await self._skip(item, out)
                        continue
                    self._queued -= 1
                    sub, frame = item.sub, item.frame
                    if sub.progress and sub.progress.get(frame.run_id) is item:  # type: ignore[arg-type]
                        del sub.progress[frame.run_id]  # type: ignore[arg-type]
                    if self.subs.get(sub.project_id) is not sub or frame.seq <= sub.last_sent:
                        continue  # unsubscribed since, or already sent
                    if frame.seq > sub.last_sent + 1:
                        await self._flush(out, sent)
                        size = sent = 0
                        await self._catch_up(sub, frame.seq - 1)
                    out.append(frame.text)
                    size += len(frame.text)
                    sent += 1
                    sub.last_sent = frame.seq
                elif isinstance(item, _Run):
                    sub, run = item.sub, item.run
                    self._queued -= len(run.frames)
                    if self.subs.get(sub.project_id) is not sub or run.last <= sub.last_sent:
                        continue
                    fits = (
                        size + run.size <= _BATCH_BYTES
                        and len(out) + len(run.texts) <= 2 * _BATCH_FRAMES
                    )
                    if run.contiguous and run.first == sub.last_sent + 1 and fits:
                        sub.last_sent = run.last
                        if self.batch and not out and not self._items and len(run.texts) > 1:
                            await self._send(run.joined)  # built once for every client
                            self._on_sent(len(run.texts))
                            continue
                        out.extend(run.texts)
                        size += run.size
                        sent += len(run.texts)
                        continue
                    for frame in run.frames:  # overlaps, gaps or too big: one by one
                        if self.subs.get(sub.project_id) is not sub or frame.seq <= sub.last_sent:
                            continue
                        if frame.seq > sub.last_sent + 1:
                            await self._flush(out, sent)
                            size = sent = 0
                            await self._catch_up(sub, frame.seq - 1)
                        out.append(frame.text)
                        size += len(frame.text)
                        sent += 1
                        sub.last_sent = frame.seq
                        if len(out) >= _BATCH_FRAMES or size >= _BATCH_BYTES:
                            await self._flush(out, sent)
                            size = sent = 0
                elif isinstance(item, _Control):
                    self._queued -= 1
                    out.append(item.text)
                    size += len(item.text)
                else:
                    self._queued -= 1
                    await self._flush(out, sent)
                    size = sent = 0
                    await self._catch_up(item.sub, item.until)
            await self._flush(out, sent)

    async def _skip(self, item: _Live, out: list[str]) -> None:
        """A superseded progress: not sent, but its seq counts as passed."""
        sub, seq = item.sub, item.frame.seq
        if self.subs.get(sub.project_id) is not sub or seq <= sub.last_sent:
            return
        if seq > sub.last_sent + 1:
            await self._flush(out, 0)
            await self._catch_up(sub, seq - 1)
        sub.last_sent = seq

    async def _flush(self, out: list[str], events: int) -> None:
        """Send ``out`` (then empty it): one batch message when the client asked for
        batching, else one message each; ``events`` of them are events (metrics)."""
        if not out:
            return
        if self.batch and len(out) > 1:
            await self._send(batch_text(out))
        else:
            for text in out:
                await self._send(text)
        out.clear()
        if events:
            self._on_sent(events)

    async def _send(self, text: str) -> None:
        """Await the socket (back-pressure); :meth:`Hub.drop_stalled` bounds the wait."""
        loop = asyncio.get_running_loop()
        self.sending_since = loop.time()
        try:
            await self._raw_send(text)
        finally:
            self.sending_since = None

    async def _catch_up(self, sub: Subscription, until: int) -> None:
        """Send stored events ``last_sent < seq <= until`` of ``sub`` from the log."""
        while sub.last_sent < until and self.subs.get(sub.project_id) is sub:
            rows = await events_after_async(
                self._db, sub.project_id, after=sub.last_sent, until=until, limit=_PAGE
            )
            if not rows:
                return  # the project's events are gone (deleted)
            sub.last_sent = rows[-1][0]
            for chunk in _chunks([frame_text(seq, body) for seq, body in rows]):
                await self._flush(chunk, 0)
            self._on_sent(len(rows))


def _chunks(texts: list[str]) -> Iterator[list[str]]:
    """``texts`` in runs that fit one batch message (frame count and size)."""
    chunk: list[str] = []
    size = 0
    for text in texts:
        if chunk and (len(chunk) >= _BATCH_FRAMES or size + len(text) > _BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(text)
        size += len(text)
    if chunk:
        yield chunk


class Hub:
    """Per process: which connections watch which project, and what was dispatched.

    Frames are handed on to connections in seq order without gaps, per project: a frame
    beyond the next seq (another replica stored the ones between) is held while ONE read
    of the log fetches the missing seqs for every connection of the process — they are
    already committed, because a seq is taken under the project row's lock held until its
    commit. Holding is bounded (``_HOLD_MAX`` frames per project; beyond, the held frames
    are dropped and the log read brings them back)."""

    def __init__(self, db: Database, *, poll_interval: float) -> None:
        self._db = db
        self.poll_interval = poll_interval
        self._watchers: dict[uuid.UUID, set[Connection]] = {}
        self._known: dict[uuid.UUID, int] = {}  # the last seq handed on, per project
        self._collected: dict[uuid.UUID, list[Frame]] = {}  # dispatched, not yet handed on
        self._flush_scheduled = False
        self._held: dict[uuid.UUID, dict[int, Frame]] = {}  # beyond a gap, by seq
        self._filling: dict[uuid.UUID, asyncio.Task[None]] = {}
        #: log reads that filled gaps between replicas (metrics, tests)
        self.gap_reads = 0

    @property
    def connections(self) -> int:
        return len(self._all_connections())

    def _all_connections(self) -> set[Connection]:
        return {c for conns in self._watchers.values() for c in conns}

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
            self._held.pop(project_id, None)

    def unwatch_all(self, conn: Connection) -> None:
        for project_id in list(conn.subs):
            self.unwatch(conn, project_id)

    def dispatch(self, frame: Frame) -> None:
        """Hand a committed event to every connection watching its project, in seq order.

        Frames are collected and handed on once per event-loop turn, so a connection
        wakes once for a whole group commit rather than once per event. A frame at or
        below the last one handed on is a duplicate (the poller after the writer); one
        beyond the next seq waits for the gap to be read from the log."""
        project_id = frame.project_id
        if project_id not in self._watchers:
            return
        known = self._known.get(project_id)
        if known is not None:
            if frame.seq <= known:
                return
            if frame.seq > known + 1:
                self._hold(frame)
                return
        self._known[project_id] = frame.seq
        self._collect(frame)
        if project_id in self._held:
            self._release(project_id)

    def _collect(self, frame: Frame) -> None:
        collected = self._collected.get(frame.project_id)
        if collected is None:
            self._collected[frame.project_id] = [frame]
        else:
            collected.append(frame)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._hand_on)

    def _hold(self, frame: Frame) -> None:
        held = self._held.setdefault(frame.project_id, {})
        if len(held) >= _HOLD_MAX:
            held.clear()  # stored: the gap's log read (or the poller) brings them back
        held[frame.seq] = frame
        if frame.project_id not in self._filling:
            task = asyncio.ensure_future(self._fill(frame.project_id))
            self._filling[frame.project_id] = task

    def _release(self, project_id: uuid.UUID) -> None:
        """Hand on the held frames that follow the last one handed on."""
        held = self._held.get(project_id)
        known = self._known.get(project_id)
        if not held or known is None:
            return
        while (frame := held.pop(known + 1, None)) is not None:
            known = frame.seq
            self._collect(frame)
        self._known[project_id] = known
        for seq in [s for s in held if s <= known]:
            del held[seq]
        if not held:
            del self._held[project_id]

    async def _fill(self, project_id: uuid.UUID) -> None:
        """Read the seqs missing before the held frames (one read for every connection)."""
        try:
            while True:
                held, known = self._held.get(project_id), self._known.get(project_id)
                if not held or known is None or project_id not in self._watchers:
                    return
                first = min(held)
                if first <= known + 1:
                    self._release(project_id)
                    continue
                self.gap_reads += 1
                frames = await frames_after_async(
                    self._db, project_id, after=known, until=first - 1, limit=_PAGE
                )
                for frame in frames:
                    self.dispatch(frame)
                if not frames and self._known.get(project_id) == known:
                    # the missing events are gone (the project was deleted): go on
                    self._known[project_id] = first - 1
                    self._release(project_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reading a gap of the event log failed; the poller retries")
        finally:
            self._filling.pop(project_id, None)

    def _hand_on(self) -> None:
        self._flush_scheduled = False
        collected, self._collected = self._collected, {}
        for project_id, frames in collected.items():
            run = FrameRun(frames)
            for conn in list(self._watchers.get(project_id, ())):
                conn.deliver_many(project_id, frames, run)

    def drop_stalled(self) -> int:
        """Drop (1013) every client whose socket has not taken a send for its
        ``send_timeout``; returns how many."""
        now = asyncio.get_running_loop().time()
        stalled = [c for c in self._all_connections() if c.stalled(now)]
        for conn in stalled:
            conn.drop(CLOSE_SLOW)
        return len(stalled)

    async def poll_once(self) -> int:
        """Dispatch events other processes stored since the last look; returns how many."""
        watched = list(self._watchers)
        if not watched:
            return 0
        latest = await latest_seqs_async(self._db, watched)
        sent = 0
        for project_id, seq in latest.items():
            known = self._known.get(project_id)
            if known is None or seq <= known:
                continue
            frames = await frames_after_async(
                self._db, project_id, after=known, until=seq, limit=_PAGE
            )
            for frame in frames:
                self.dispatch(frame)
            sent += len(frames)
        return sent

    async def poll_forever(self) -> None:
        """Poll for other processes' events, and drop stalled clients, until cancelled."""
        while True:
            try:
                self.drop_stalled()
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event poll failed; retrying")
            await asyncio.sleep(self.poll_interval)
