"""One WebSocket client of the hub: a bounded send queue and the sender that drains it.

The hub and the receive loop only queue (never await); the sender writes everything queued
in one go — one WebSocket message per frame, or ONE batch message for a client that asked
for batching — awaiting the socket (back-pressure). A full queue, or a send the socket has
not taken for ``send_timeout`` (the hub's poll loop checks), drops the client with close
1013; it resumes from its last seq."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from services.gateway.eventlog import Frame, events_after_async, frame_text
from services.gateway.fanout.frames import (
    BATCH_BYTES,
    BATCH_FRAMES,
    PAGE,
    FrameRun,
    batch_text,
    chunks,
)
from services.gateway.fanout.queue_items import (
    CatchUp,
    Control,
    Item,
    Live,
    QueuedRun,
    Subscription,
)
from shared.db import Database
from shared.events import TrainingProgress

__all__ = ["CLOSE_SLOW", "Close", "Connection", "Send"]

log = logging.getLogger(__name__)

CLOSE_SLOW = 1013  # "try again later": the client could not keep up
_PING = '{"type":"ping"}'
_PROGRESS = TrainingProgress.event_type()

Send = Callable[[str], Awaitable[None]]
Close = Callable[[int], Awaitable[None]]


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
        self._items: deque[Item] = deque()
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

    def offer(self, item: Item, weight: int = 1) -> None:
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
                self.offer(QueuedRun(sub, run), len(frames))
            return
        for frame in frames:
            if self.dropped:
                return
            if frame.seq > sub.last_sent:
                self._queue_live(sub, frame)

    def _queue_live(self, sub: Subscription, frame: Frame) -> None:
        entry = Live(sub, frame)
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
        self.offer(Control(json.dumps(message)))

    def activate(self, sub: Subscription, *, latest: int) -> None:
        """Finish a subscription: reply, backfill up to ``latest``, then the buffered live."""
        sub.last_sent = min(sub.last_sent, latest)
        pending, sub.pending = sub.pending or [], None
        self.control({"type": "subscribed", "project_id": str(sub.project_id), "seq": latest})
        self.offer(CatchUp(sub, latest))
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
            while self._items and len(out) < BATCH_FRAMES and size < BATCH_BYTES:
                item = self._items.popleft()
                if isinstance(item, Live):  # per frame (coalescing): kept inline
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
                elif isinstance(item, QueuedRun):
                    size, sent = await self._take_run(item, out, size, sent)
                elif isinstance(item, Control):
                    self._queued -= 1
                    out.append(item.text)
                    size += len(item.text)
                else:
                    self._queued -= 1
                    await self._flush(out, sent)
                    size = sent = 0
                    await self._catch_up(item.sub, item.until)
            await self._flush(out, sent)

    async def _take_run(
        self, item: QueuedRun, out: list[str], size: int, sent: int
    ) -> tuple[int, int]:
        """Add a run of frames to ``out`` (``size`` characters, ``sent`` events so far), or
        send it as its shared batch message; returns ``out``'s new size and event count.

        Called once per run, not per frame: the run's texts and batch message were built
        once for every connection; only a run that overlaps what was sent, follows a gap or
        does not fit goes frame by frame."""
        sub, run = item.sub, item.run
        self._queued -= len(run.frames)
        if self.subs.get(sub.project_id) is not sub or run.last <= sub.last_sent:
            return size, sent
        fits = size + run.size <= BATCH_BYTES and len(out) + len(run.texts) <= 2 * BATCH_FRAMES
        if run.contiguous and run.first == sub.last_sent + 1 and fits:
            sub.last_sent = run.last
            if self.batch and not out and not self._items and len(run.texts) > 1:
                await self._send(run.joined)  # built once for every client
                self._on_sent(len(run.texts))
                return size, sent
            out.extend(run.texts)
            return size + run.size, sent + len(run.texts)
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
            if len(out) >= BATCH_FRAMES or size >= BATCH_BYTES:
                await self._flush(out, sent)
                size = sent = 0
        return size, sent

    async def _skip(self, item: Live, out: list[str]) -> None:
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
                self._db, sub.project_id, after=sub.last_sent, until=until, limit=PAGE
            )
            if not rows:
                return  # the project's events are gone (deleted)
            sub.last_sent = rows[-1][0]
            for chunk in chunks([frame_text(seq, body) for seq, body in rows]):
                await self._flush(chunk, 0)
            self._on_sent(len(rows))
