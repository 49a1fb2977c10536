"""Per-user limit on active runs (issue 13): ``AIDP_USER_MAX_ACTIVE_RUNS``.

A run counts against the user who requested it (``gateway_runs.requested_by``: the creator
of a project for its run 1, the requester of each later run) until it reaches a terminal
status (deployed, succeeded, failed, cancelled). A start, re-run or project creation beyond
the limit answers 429 ``too_many_active_runs`` naming the limit and the setting; nothing is
stored. The count is taken in the same transaction as the insert, after a per-user
transaction lock on PostgreSQL (``pg_advisory_xact_lock``), so two starts racing on
different gateway replicas are counted one after the other; SQLite (embedded, one process)
serialises writers by itself.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, text
from sqlmodel import col

from services.gateway.models import TERMINAL_STATUSES, Run
from shared.errors import RateLimited

__all__ = ["TooManyActiveRuns", "check_active_runs"]

#: seconds a client is told to wait: runs take minutes, the number is only a hint
_RETRY_AFTER = 60
#: first key of the two-key advisory lock taken per user ("aidp" "run"); the second is
#: the user id's first 32 bits (a collision only makes two users' checks wait in turn)
_LOCK_CLASS = 0x61696470 ^ 0x72756E


class TooManyActiveRuns(RateLimited):
    """429: the user already has ``limit`` runs that are not finished."""

    code = "too_many_active_runs"


def check_active_runs(session: Any, user_id: uuid.UUID, limit: int) -> None:
    """Raise :class:`TooManyActiveRuns` when ``user_id`` has ``limit`` or more active runs
    (``limit`` 0 = unlimited)."""
    if limit <= 0:
        return
    if session.get_bind().dialect.name == "postgresql":  # held until the caller commits
        session.execute(
            text("SELECT pg_advisory_xact_lock(:kind, :user)"),
            {"kind": _LOCK_CLASS, "user": int.from_bytes(user_id.bytes[:4], "big", signed=True)},
        )
    active = session.execute(
        select(func.count())
        .select_from(Run)
        .where(col(Run.requested_by) == user_id, col(Run.status).not_in(TERMINAL_STATUSES))
    ).scalar_one()
    if active >= limit:
        raise TooManyActiveRuns(
            f"You already have {active} active runs; the limit is {limit} per user "
            "(AIDP_USER_MAX_ACTIVE_RUNS). Cancel a run or wait until one finishes.",
            retry_after=_RETRY_AFTER,
        )
