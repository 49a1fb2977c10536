"""Download progress: the connectors' byte counts, throttled into a sink, checked for
cancellation and turned into lease heartbeats."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from services.fetcher.errors import FetchCancelled
from shared.spec import Source

__all__ = ["ProgressSink", "Throttle"]

#: (source uri, bytes done, bytes total or None) — already throttled by the caller.
ProgressSink = Callable[[str, int, int | None], None]


class Throttle:
    """The connectors' :data:`~services.fetcher.connectors.Progress`: counts bytes, raises
    FetchCancelled once ``cancelled`` is set, and at most every ``interval`` seconds renews
    the lease (``heartbeat``) and tells ``sink``."""

    def __init__(
        self,
        source: Source,
        total: int | None,
        sink: ProgressSink,
        interval: float,
        cancelled: threading.Event,
        heartbeat: Callable[[], None],
    ) -> None:
        self.source, self.total, self.sink, self.interval = source, total, sink, interval
        self.cancelled, self.heartbeat = cancelled, heartbeat
        self.done = 0
        self._last = 0.0

    def __call__(self, n: int) -> None:
        if self.cancelled.is_set():
            raise FetchCancelled()
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self.heartbeat()
            self.sink(self.source.uri, self.done, self.total)

    def final(self) -> None:
        """The last report, with the total known at the end."""
        if self.done:
            self.sink(self.source.uri, self.done, self.total or self.done)
