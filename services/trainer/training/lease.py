"""The DB lease on a run: which trainer instance (or replica) works on it.

The supervisor claims runs in an active state (``staging``/``training``) whose lease is
free, expired or already its own; the run's job renews it every poll while it works and
releases it when cancelled. A crashed trainer's leases expire, so another instance takes
its runs over and resumes them from their latest checkpoint.

The lease is the run's ``owner``/``lease_until`` pair, kept by the service kit's
:class:`shared.service.leases.RowLeases` (claim, renew, steal after expiry, release); this
class only adds what the job needs on top: a renewal that also reads the run's state.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime

from sqlmodel import col

from services.trainer.models import Run
from services.trainer.runs import ACTIVE
from services.trainer.settings import TrainerSettings
from shared.db import Database
from shared.service.leases import RowLeases

__all__ = ["RunLeases"]


class RunLeases:
    """Claim, renew and release the lease of runs for one trainer instance."""

    def __init__(self, db: Database, settings: TrainerSettings, instance: str) -> None:
        self.db = db
        self.settings = settings
        self.instance = instance
        self.rows = RowLeases(
            db,
            key=Run.run_id,
            holder=Run.owner,
            until=Run.lease_until,
            instance=instance,
            seconds=settings.trainer_lease_seconds,
            eligible=lambda: [col(Run.state).in_(ACTIVE)],  # a finished run is never leased
        )

    def lease_end(self) -> datetime:
        """When a lease taken or renewed now expires."""
        return self.rows.lease_end()

    def claim(self, skip: Collection[uuid.UUID]) -> list[uuid.UUID]:
        """Take the lease of every active run nobody holds (or whose lease expired);
        ``skip``: runs this instance already works on. Returns the runs claimed."""
        return list(self.rows.claim_many(skip=skip))

    def renew(self, run_id: uuid.UUID) -> str | None:
        """Extend the lease; returns the run's state, or None if the lease was lost."""
        if not self.rows.renew(run_id):
            return None
        with self.db.session() as session:
            run = session.get(Run, run_id)
            return None if run is None else run.state

    def release(self, run_id: uuid.UUID) -> None:
        """Give the lease up (the job was cancelled): another instance may take the run."""
        self.rows.release(run_id)
