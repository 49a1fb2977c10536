"""The DB lease on a run: which trainer instance (or replica) works on it.

The supervisor claims runs in an active state (``staging``/``training``) whose lease is
free, expired or already its own; the run's job renews it every poll while it works and
releases it when cancelled. A crashed trainer's leases expire, so another instance takes
its runs over and resumes them from their latest checkpoint.
"""

from __future__ import annotations

import uuid
from collections.abc import Container
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlmodel import col, select

from services.trainer.models import Run, now
from services.trainer.runs import ACTIVE
from services.trainer.settings import TrainerSettings
from shared.db import Database

__all__ = ["RunLeases"]


class RunLeases:
    """Claim, renew and release the lease of runs for one trainer instance."""

    def __init__(self, db: Database, settings: TrainerSettings, instance: str) -> None:
        self.db = db
        self.settings = settings
        self.instance = instance

    def lease_end(self) -> datetime:
        """When a lease taken or renewed now expires."""
        return now() + timedelta(seconds=self.settings.trainer_lease_seconds)

    def claim(self, skip: Container[uuid.UUID]) -> list[uuid.UUID]:
        """Take the lease of every active run nobody holds (or whose lease expired);
        ``skip``: runs this instance already works on. Returns the runs claimed."""
        claimed = []
        with self.db.session() as session:
            candidates = session.exec(select(Run.run_id).where(col(Run.state).in_(ACTIVE))).all()
            for run_id in candidates:
                if run_id in skip:
                    continue
                moment = now()
                result = session.execute(
                    update(Run)
                    .where(
                        col(Run.run_id) == run_id,
                        col(Run.state).in_(ACTIVE),
                        or_(
                            col(Run.owner).is_(None),
                            col(Run.lease_until) < moment,
                            col(Run.owner) == self.instance,
                        ),
                    )
                    .values(owner=self.instance, lease_until=self.lease_end())
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    claimed.append(run_id)
            session.commit()
        return claimed

    def renew(self, run_id: uuid.UUID) -> str | None:
        """Extend the lease; returns the run's state, or None if the lease was lost."""
        with self.db.session() as session:
            result = session.execute(
                update(Run)
                .where(col(Run.run_id) == run_id, col(Run.owner) == self.instance)
                .values(lease_until=self.lease_end())
            )
            session.commit()
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
            run = session.get(Run, run_id)
            return None if run is None else run.state

    def release(self, run_id: uuid.UUID) -> None:
        """Give the lease up (the job was cancelled): another instance may take the run."""
        with self.db.session() as session:
            session.execute(
                update(Run)
                .where(col(Run.run_id) == run_id, col(Run.owner) == self.instance)
                .values(owner=None, lease_until=None)
            )
            session.commit()
