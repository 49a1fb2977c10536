"""Database leases: which replica works on a row (issue 17 item 1).

A lease is a holder and an expiry. A replica *claims* a row whose lease is free, expired or
already its own, *renews* (heartbeats) it while it works, and *releases* it when done or
cancelled. A replica that dies stops renewing; once its lease expires another replica
*steals* the row by claiming it — so every claim is also a steal-after-expiry.

Two shapes:

- :class:`RowLeases`: the lease lives in two columns of the row it guards (a job, a run, a
  deployment): ``holder`` (None when free) and ``until``. ``eligible`` narrows which rows
  may be leased at all (e.g. ``status == "pending"``); it is re-checked in every claim, so a
  row that left that state meanwhile is never claimed.
- :class:`KeyLeases`: a table of ``key → holder, expires_at`` rows guarding something that
  is not a row (a download of one artifact, single-flight across replicas); a claim inserts
  the row, or takes it over once expired.

Every single-row operation is one compare-and-set ``UPDATE`` (the row count says whether it
won), the same on SQLite and PostgreSQL. :meth:`RowLeases.claim_many` claims a batch: on
PostgreSQL it locks the candidates ``FOR UPDATE SKIP LOCKED`` so concurrent replicas split
the batch instead of racing for the same rows; on SQLite (one writer at a time) it
compare-and-sets each candidate.

Times are :func:`shared.service.clock.utcnow`; a lease lasts ``seconds`` from the claim or
the last renewal. Renew at least every third of it (the callers' convention) so one missed
heartbeat does not lose the lease.

Users: the fetcher's jobs (``fetcher_jobs.claimed_by/claim_expires_at``) and single-flight
downloads (``fetcher_leases``), the trainer's run and deployment leases
(``services/trainer/training/lease.py``, ``services/trainer/serving/lease.py``) and the
provisioner's run leases (``provisioner_runs.lease_holder/lease_until``,
``services/provisioner/lease.py``: a replica resumes only the runs it can claim, and
autostop claims a run before stopping its nodes).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from shared.db import Database
from shared.service.clock import utcnow

__all__ = ["KeyLeases", "RowLeases"]


class RowLeases:
    """Leases held in a ``holder``/``until`` column pair of a table, for one replica.

    ``key``, ``holder`` and ``until`` are the model's columns (``Model.id`` etc.);
    ``eligible`` returns the extra conditions a row must meet to be leased (evaluated at
    each call, so it may mention the current time). ``instance`` names this replica.
    """

    def __init__(
        self,
        db: Database,
        *,
        key: Any,
        holder: Any,
        until: Any,
        instance: str,
        seconds: float,
        eligible: Callable[[], Sequence[Any]] = lambda: (),
    ) -> None:
        self.db = db
        self.key, self.holder, self.until = key, holder, until
        self.table = key.class_
        self.instance = instance
        self.duration = timedelta(seconds=seconds)
        self.eligible = eligible

    def lease_end(self, now: datetime | None = None) -> datetime:
        """When a lease taken or renewed at ``now`` (default: now) expires."""
        return (now or utcnow()) + self.duration

    def claimable(self, now: datetime | None = None) -> Any:
        """Condition: the lease is free, expired or this replica's."""
        return or_(
            self.holder.is_(None),
            self.until < (now or utcnow()),
            self.holder == self.instance,
        )

    def held(self) -> Any:
        """Condition: this replica holds the lease (use it to guard a final transition)."""
        return self.holder == self.instance

    def unheld(self) -> list[Any]:
        """Keys of the eligible rows this replica could claim now (free, expired or own)."""
        with self.db.session() as s:
            rows = s.execute(select(self.key).where(*self.eligible(), self.claimable()))
            return list(rows.scalars())

    def claim(self, key: Hashable) -> bool:
        """Take, renew or steal (after expiry) the lease of one row; True if held now."""
        now = utcnow()
        with self.db.session() as s:
            result = s.execute(
                update(self.table)
                .where(self.key == key, *self.eligible(), self.claimable(now))
                .values({self.holder.key: self.instance, self.until.key: self.lease_end(now)})
            )
            s.commit()
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def claim_many(self, skip: Collection[Any] = (), limit: int | None = None) -> list[Any]:
        """Claim eligible rows whose lease is free, expired or own (``skip``: keys this
        replica already works on; ``limit``: at most that many). Returns the keys."""
        now = utcnow()
        with self.db.session() as s:
            query = select(self.key).where(*self.eligible(), self.claimable(now))
            if skip:
                query = query.where(self.key.not_in(list(skip)))
            if limit is not None:
                query = query.order_by(self.key).limit(limit)
            if self.db.is_postgres:
                # Rows another replica is claiming right now are skipped, not waited for.
                query = query.with_for_update(skip_locked=True)
            claimed = []
            for key in list(s.execute(query).scalars()):
                result = s.execute(
                    update(self.table)
                    .where(self.key == key, *self.eligible(), self.claimable(now))
                    .values({self.holder.key: self.instance, self.until.key: self.lease_end(now)})
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    claimed.append(key)
            s.commit()
            return claimed

    def renew(self, key: Hashable) -> bool:
        """Heartbeat: extend a lease this replica holds; False if it was lost (stolen after
        expiry or released)."""
        with self.db.session() as s:
            result = s.execute(
                update(self.table)
                .where(self.key == key, self.held())
                .values({self.until.key: self.lease_end()})
            )
            s.commit()
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def release(self, key: Hashable) -> bool:
        """Give the lease up (another replica may claim at once); False if not held."""
        with self.db.session() as s:
            result = s.execute(
                update(self.table)
                .where(self.key == key, self.held())
                .values({self.holder.key: None, self.until.key: None})
            )
            s.commit()
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]


class KeyLeases:
    """Leases kept as rows of a lease table (``key``, ``holder``, ``expires_at``).

    ``model`` is the SQLModel class of the table; a row exists while someone holds (or
    held, until it is released or stolen) the lease of its key.
    """

    def __init__(self, db: Database, model: Any, *, instance: str, seconds: float) -> None:
        self.db = db
        self.model = model
        self.instance = instance
        self.duration = timedelta(seconds=seconds)

    def claim(self, key: str) -> bool:
        """Take the lease of ``key`` (True) unless a live holder has it; an expired one is
        stolen. Not reentrant: a second claim by the holder itself is refused until expiry."""
        now = utcnow()
        m = self.model
        with self.db.session() as s:
            s.add(m(key=key, holder=self.instance, expires_at=now + self.duration))
            try:
                s.commit()
                return True
            except IntegrityError:
                s.rollback()
            result = s.execute(
                update(m)
                .where(m.key == key, m.expires_at < now)
                .values(holder=self.instance, expires_at=now + self.duration)
            )
            s.commit()
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def renew(self, key: str) -> bool:
        """Heartbeat: extend the lease if this replica still holds it."""
        m = self.model
        with self.db.session() as s:
            result = s.execute(
                update(m)
                .where(m.key == key, m.holder == self.instance)
                .values(expires_at=utcnow() + self.duration)
            )
            s.commit()
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def release(self, key: str) -> bool:
        """Drop the lease row if this replica holds it."""
        m = self.model
        with self.db.session() as s:
            result = s.execute(delete(m).where(m.key == key, m.holder == self.instance))
            s.commit()
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]
