"""The watch lease of a deployment: which trainer replica watches its servers.

Each live deployment is watched by exactly one replica, the holder of its lease
(``owner``/``lease_until`` in ``trainer_deployments``, renewed every third of
``trainer_lease_seconds``). Only the holder restarts a crashed server; when a replica dies
or stops, its leases expire (or are released) and another replica's supervisor adopts the
running servers (health check) or restarts them.

The lease is kept by the service kit's :class:`shared.service.leases.RowLeases` (claim —
which also renews and steals after expiry — and release); only live deployments are leased.
"""

from __future__ import annotations

import uuid

from sqlmodel import col, select

from services.trainer.models import Deployment
from services.trainer.serving.views import LIVE
from services.trainer.settings import TrainerSettings
from shared.db import Database
from shared.service.leases import RowLeases

__all__ = ["DeploymentLeases"]


class DeploymentLeases:
    """Take, extend and release deployments' watch leases for one trainer instance."""

    def __init__(self, db: Database, settings: TrainerSettings, instance: str) -> None:
        self.db = db
        self.settings = settings
        self.instance = instance
        self.rows = RowLeases(
            db,
            key=Deployment.id,
            holder=Deployment.owner,
            until=Deployment.lease_until,
            instance=instance,
            seconds=settings.trainer_lease_seconds,
            eligible=lambda: [col(Deployment.status).in_(LIVE)],
        )

    def unwatched(self) -> list[uuid.UUID]:
        """Live deployments nobody else watches."""
        return list(self.rows.unheld())

    def serving_here(self) -> list[Deployment]:
        """The live deployments this instance serves (or that nobody watches)."""
        with self.db.session() as session:
            return list(
                session.exec(
                    select(Deployment).where(*self.rows.eligible(), self.rows.claimable())
                ).all()
            )

    def claim(self, dep_id: uuid.UUID) -> bool:
        """Take (or extend) the lease; False while another replica holds a live one."""
        return self.rows.claim(dep_id)

    def release(self, dep_id: uuid.UUID) -> None:
        """Give the lease up (the watcher ended)."""
        self.rows.release(dep_id)
