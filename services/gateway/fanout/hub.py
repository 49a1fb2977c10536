"""The per-process hub: which connections watch which project, and what was dispatched.

Events reach it from this process's event-log writer (:meth:`Hub.dispatch` after its
commit) and from :meth:`Hub.poll_forever` (events other gateway processes stored). It
hands frames on once per event-loop turn, per project in seq order without gaps; a gap
(seqs another replica stored) is read from the log once for every connection."""

from __future__ import annotations

import asyncio
import logging
import uuid

from services.gateway.eventlog import Frame, frames_after_async, latest_seqs_async
from services.gateway.fanout.connection import CLOSE_SLOW, Connection
from services.gateway.fanout.frames import PAGE, FrameRun
from shared.db import Database

__all__ = ["Hub"]

log = logging.getLogger(__name__)

_HOLD_MAX = 5000  # frames held per project beyond a gap


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
                    self._db, project_id, after=known, until=first - 1, limit=PAGE
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
                self._db, project_id, after=known, until=seq, limit=PAGE
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
