"""The DB lease on a run: which provisioner replica works on it (issue 17 item 1).

Several replicas may run against one database. A replica acts on a run's nodes (provision,
replace, release, autostop) only while it holds the run's lease, the row's
``lease_holder``/``lease_until`` pair kept by the service kit's
:class:`shared.service.leases.RowLeases` (claim, renew, steal after expiry, release). The
jobs of :mod:`services.provisioner.jobs` renew it every third of
``AIDP_PROVISIONER_LEASE_SECONDS`` while they work and give it up when the run comes to rest
(``ready``, ``released``, ``failed``); a replica that dies stops renewing, and once its
leases expire another replica takes its unfinished runs over.

Only runs in an active state are ever leased (:data:`LEASED`); ``validating`` runs wait for
an event, not for a replica, and a final run is never leased again.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlmodel import col

from services.provisioner.models import ACTIVE_STATES, RunNodes
from shared.db import Database
from shared.service.leases import RowLeases

__all__ = ["LEASED", "UNFINISHED", "RunLeases"]

#: states a run may be leased in (work in progress, or a ready run being acted on)
LEASED = tuple(sorted(ACTIVE_STATES))
#: states whose job is not done: a replica takes them over once their lease is free
UNFINISHED = ("requested", "provisioning", "replacing", "releasing")


class RunLeases:
    """Claim, renew and release the leases of runs for one provisioner replica."""

    def __init__(self, db: Database, *, seconds: float, instance: str | None = None) -> None:
        self.db = db
        #: this replica's name, like the trainer's: unique per process (a restart is a new one)
        self.instance = instance or uuid.uuid4().hex
        #: how often held leases are renewed: a third of their duration
        self.interval = seconds / 3
        self.rows = self._leases(db, seconds, ACTIVE_STATES)
        self._unfinished = self._leases(db, seconds, UNFINISHED)

    def _leases(self, db: Database, seconds: float, states: Collection[str]) -> RowLeases:
        """Leases of the runs in ``states`` (re-checked by every claim)."""
        return RowLeases(
            db,
            key=RunNodes.run_id,
            holder=RunNodes.lease_holder,
            until=RunNodes.lease_until,
            instance=self.instance,
            seconds=seconds,
            eligible=lambda: [col(RunNodes.state).in_(sorted(states))],
        )

    def claim(self, run_id: uuid.UUID) -> bool:
        """Take (or renew, or steal after expiry) the lease of an active run; True if held."""
        return self.rows.claim(run_id)

    def claim_unfinished(self, skip: Collection[uuid.UUID] = ()) -> list[uuid.UUID]:
        """Claim every unfinished run whose lease is free, expired or this replica's
        (``skip``: runs this replica already works on, or gave up on). Returns them."""
        return list(self._unfinished.claim_many(skip=skip))

    def renew(self, run_id: uuid.UUID) -> str | None:
        """Heartbeat: extend the lease; the run's state, or None if the lease was lost
        (another replica stole it after expiry, or the run ended)."""
        if not self.rows.renew(run_id):
            return None
        with self.db.session() as session:
            row = session.get(RunNodes, run_id)
            return None if row is None else row.state

    def release(self, run_id: uuid.UUID) -> bool:
        """Give the lease up (the run is at rest): any replica may claim it at once."""
        return self.rows.release(run_id)

    def holds(self, row: RunNodes) -> bool:
        """Does this replica hold ``row``'s lease? Jobs check it before a transition, so a
        replica that lost a run (stolen after expiry) changes nothing of it."""
        return row.lease_holder == self.instance
