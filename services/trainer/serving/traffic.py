"""Requests to a deployment: round-robin over its replicas, when it was last used, and
scale to zero's idle test.

``last_request_at`` is written at most every :data:`TOUCH_EVERY` seconds (busy endpoints)
so the lease holder sees traffic served by any replica.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC

from services.trainer.models import Deployment

__all__ = ["TOUCH_EVERY", "Traffic"]

#: Seconds between writes of a deployment's ``last_request_at`` (busy endpoints).
TOUCH_EVERY = 2.0


class Traffic:
    """Per deployment: the next replica, the time of the last request, of the last write."""

    def __init__(self) -> None:
        self._turn: dict[uuid.UUID, int] = {}  # round-robin position per deployment
        self._used: dict[uuid.UUID, float] = {}  # time of the last request
        self._touched: dict[uuid.UUID, float] = {}  # time last_request_at was written

    def request(self, dep_id: uuid.UUID, replicas: int) -> tuple[int, bool]:
        """A request comes: the replica it goes to, and whether ``last_request_at`` is due
        a write."""
        replica = (self._turn.get(dep_id, -1) + 1) % replicas
        self._turn[dep_id] = replica
        stamp = time.time()
        self._used[dep_id] = stamp
        due = stamp - self._touched.get(dep_id, 0.0) >= TOUCH_EVERY
        if due:
            self._touched[dep_id] = stamp
        return replica, due

    def used_now(self, dep_id: uuid.UUID, *, only_if_unknown: bool = False) -> None:
        """Count the deployment as used now (it just started, or was adopted)."""
        if only_if_unknown:
            self._used.setdefault(dep_id, time.time())
        else:
            self._used[dep_id] = time.time()

    def idle_for(self, dep: Deployment) -> float | None:
        """Seconds without a request when past the deployment's idle timeout, else None."""
        if not dep.idle_timeout_s:
            return None
        last = self._used.get(dep.id, 0.0)
        if dep.last_request_at is not None:
            stamp = dep.last_request_at
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=UTC)
            last = max(last, stamp.timestamp())
        if not last:
            self._used[dep.id] = last = time.time()
        idle = time.time() - last
        return idle if idle >= dep.idle_timeout_s else None

    def forget(self, dep_id: uuid.UUID) -> None:
        for table in (self._turn, self._used, self._touched):
            table.pop(dep_id, None)
