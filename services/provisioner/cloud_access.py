"""Who may provision on the platform's own cloud credentials, and what it may cost.

A run on a billed provider (``idc``) uses its owner's credentials (their secrets
``ITAC_CLIENT_ID``, ``ITAC_CLIENT_SECRET``, ``ITAC_CLOUDACCOUNT``) when all are stored.
Otherwise it may use the platform's only when the owner is allowed: named by
``AIDP_CLOUD_PLATFORM_CREDENTIAL_USERS`` (``none`` | ``all`` | user ids) or on the admin
list (``provisioner_cloud_access``, replaced through ``PUT /internal/cloud-access``, i.e.
``PUT /api/admin/cloud-access``; every change is kept in
``provisioner_cloud_access_changes``). Anyone else's run fails at the ``check`` step,
before anything is created, naming the secrets to set.

Price caps bound the platform's money only (a user's own account is theirs to spend: their
spec's ``max_hourly_usd`` applies as before):

- per run: the cap is ``min(max_hourly_usd, AIDP_CLOUD_MAX_PRICE_PER_HOUR)``; a spec asking
  more than the platform's cap is refused (it can never raise it);
- per user: the run's price plus that of the user's other active runs on the platform's
  credentials must stay within ``AIDP_CLOUD_MAX_PRICE_PER_USER_HOUR``. The check and the
  record of the run's price happen in one transaction, serialised (an advisory lock on
  PostgreSQL, a process lock on SQLite), so two runs checked at once cannot both pass.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlmodel import col, delete, select

from services.provisioner.models import ACTIVE_STATES, CloudAccess, CloudAccessChange, RunNodes
from services.provisioner.settings import ProvisionerSettings, parse_credential_users
from shared.db import Database
from shared.errors import ProviderError

__all__ = [
    "Billing",
    "CloudAccessPolicy",
    "platform_credentials_refused",
]

#: pg_advisory_xact_lock key of the per-user budget check ("aidp" "bud").
_BUDGET_LOCK = 0x61696470_627564
_local_lock = threading.Lock()


@dataclass(frozen=True)
class Billing:
    """What a run costs and on whose account: ``source`` is 'user' or 'platform'."""

    source: str
    hourly_usd: float | None


def platform_credentials_refused() -> ProviderError:
    """The error of a user who has no credentials and may not use the platform's."""
    return ProviderError(
        "no Intel Tiber AI Cloud credentials of your own, and this platform lends its own"
        " only to users an operator allows: store your secrets ITAC_CLIENT_ID,"
        " ITAC_CLIENT_SECRET and ITAC_CLOUDACCOUNT (aidp secrets set NAME, or PUT"
        " /api/secrets/NAME), or ask an operator to allow you"
        " (AIDP_CLOUD_PLATFORM_CREDENTIAL_USERS or PUT /api/admin/cloud-access);"
        " nothing was created",
        code="cloud_credentials_required",
    )


def _entry(row: CloudAccess) -> dict[str, Any]:
    return {
        "user_id": str(row.user_id),
        "email": row.email,
        "granted_by": str(row.granted_by) if row.granted_by else None,
        "granted_at": row.granted_at.isoformat(),
    }


class CloudAccessPolicy:
    """The allow-list (setting + admin list) and the per-user budget, over the service's DB."""

    def __init__(self, db: Database, settings: ProvisionerSettings) -> None:
        self.db = db
        self.settings = settings

    # -- who ---------------------------------------------------------------------------

    def allows(self, owner_id: uuid.UUID | None) -> bool:
        """May ``owner_id`` provision on the platform's credentials?"""
        named = parse_credential_users(self.settings.cloud_platform_credential_users)
        if named.everyone:
            return True
        if owner_id is None:
            return False
        if owner_id in named.user_ids:
            return True
        with self.db.session() as s:
            return s.get(CloudAccess, owner_id) is not None

    def describe(self) -> dict[str, Any]:
        """The whole policy as the admin API shows it."""
        named = parse_credential_users(self.settings.cloud_platform_credential_users)
        with self.db.session() as s:
            rows = s.exec(select(CloudAccess).order_by(col(CloudAccess.granted_at))).all()
        return {
            "setting": {
                "all": named.everyone,
                "user_ids": sorted(str(u) for u in named.user_ids),
            },
            "users": [_entry(r) for r in rows],
            "max_price_per_hour": self.settings.cloud_max_price_per_hour,
            "max_price_per_user_hour": self.settings.cloud_max_price_per_user_hour,
        }

    def replace(
        self, users: list[tuple[uuid.UUID, str | None]], *, actor: uuid.UUID | None
    ) -> None:
        """Make ``users`` ((id, email) pairs) the admin list, recording the change."""
        with self.db.session() as s:
            before = s.exec(select(CloudAccess)).all()
            kept = {r.user_id: r for r in before}
            after: list[CloudAccess] = []
            for user_id, email in dict(users).items():
                row = kept.get(user_id)
                if row is None:
                    row = CloudAccess(user_id=user_id, email=email, granted_by=actor)
                elif email and row.email != email:
                    row.email = email
                after.append(row)
            change = CloudAccessChange(
                actor_id=actor,
                before=[_entry(r) for r in before],
                after=[_entry(r) for r in after],
            )
            s.exec(delete(CloudAccess).where(col(CloudAccess.user_id).not_in(dict(users))))
            for row in after:
                s.add(row)
            s.add(change)
            s.commit()

    def changes(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """The latest changes of the admin list, newest first."""
        with self.db.session() as s:
            rows = s.exec(
                select(CloudAccessChange).order_by(col(CloudAccessChange.at).desc()).limit(limit)
            ).all()
        return [
            {
                "at": r.at.isoformat(),
                "actor_id": str(r.actor_id) if r.actor_id else None,
                "before": r.before,
                "after": r.after,
            }
            for r in rows
        ]

    # -- what it may cost ----------------------------------------------------------------

    def reserve(self, run_id: uuid.UUID, owner_id: uuid.UUID | None, billing: Billing) -> None:
        """Record the run's price and account; ProviderError if the owner's platform-paid
        runs would together cost more than ``AIDP_CLOUD_MAX_PRICE_PER_USER_HOUR``."""
        cap = self.settings.cloud_max_price_per_user_hour
        with _local_lock, self.db.session() as s:
            if self.db.is_postgres:
                s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _BUDGET_LOCK})
            row = s.get(RunNodes, run_id)
            if row is None:
                return
            if billing.source == "platform" and cap is not None:
                if billing.hourly_usd is None:
                    raise ProviderError(
                        "no price is known for this instance type, so the platform's per-user"
                        f" cap of ${cap:.2f}/hour cannot be checked; nothing was created",
                        code="price_unknown",
                    )
                others = s.exec(
                    select(RunNodes.hourly_usd).where(
                        RunNodes.owner_id == owner_id,
                        RunNodes.run_id != run_id,
                        RunNodes.credential_source == "platform",
                        col(RunNodes.state).in_(sorted(ACTIVE_STATES)),
                        col(RunNodes.hourly_usd).is_not(None),
                    )
                ).all()
                running = sum(v for v in others if v is not None)
                if running + billing.hourly_usd > cap:
                    raise ProviderError(
                        f"this run costs ${billing.hourly_usd:.2f}/hour and your other active"
                        f" runs on the platform's cloud account ${running:.2f}/hour: over the"
                        f" platform's cap of ${cap:.2f}/hour per user; stop a run or use your"
                        " own credentials (ITAC_* secrets); nothing was created",
                        code="over_user_cap",
                    )
            row.credential_source = billing.source
            row.hourly_usd = billing.hourly_usd
            s.add(row)
            s.commit()
