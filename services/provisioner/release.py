"""Giving nodes back: the release job, the teardown it shares, autostop and the reaper.

:func:`release` tears a ``releasing`` run's nodes down (``releasing → released``,
``NodesReleased``); the run's job (:mod:`services.provisioner.jobs`) has stopped its
provisioning or replacement step first and holds its lease. :func:`teardown` terminates
every recorded node and the run's provider resources and never raises (the reaper catches
what is left); the provisioning job also uses it when a choice fails or has no capacity.

:func:`sweep` is one periodic pass (:func:`sweep_forever`): ready runs idle past their
``autostop_minutes`` are released (each claimed first, so that of several replicas
sweeping one database only one stops a node), then :func:`reap` asks every billed provider to delete
the resources of runs that have ended.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from services.provisioner.drivers.base import Node, NodeDriver, RunContext
from services.provisioner.models import ACTIVE_STATES, RunNodes
from shared.db import run_sync
from shared.errors import ProviderError
from shared.events import NodesReleased
from shared.service.clock import utcnow
from shared.spec import ProjectSpec

if TYPE_CHECKING:
    from services.provisioner.service import Provisioner

__all__ = ["reap", "release", "sweep", "sweep_forever", "teardown"]

log = logging.getLogger(__name__)


# -- teardown ------------------------------------------------------------------------------


async def teardown(
    prov: Provisioner, ctx: RunContext, driver: NodeDriver, *, keep_state: bool = False
) -> list[str]:
    """Terminate every recorded node and the run's provider resources; never raises.
    ``keep_state``: the run goes on (another choice): its private state dir stays."""
    records = await run_sync(_node_records, prov, ctx.run_id)
    names: list[str] = []
    for record in records:
        node = Node.from_record(record)
        try:
            await driver.terminate_node(ctx, node)
            names.append(node.name)
        except Exception as exc:  # keep going: the reaper catches what is left
            log.warning("terminating %s failed: %s", node.name, exc)
    try:
        await driver.release_run(ctx)
    except Exception as exc:
        log.warning("releasing run %s resources failed: %s", ctx.run_id, exc)
    if not keep_state:
        prov._cancel.pop(ctx.run_id, None)
        shutil.rmtree(ctx.state_dir, ignore_errors=True)
    return names


def _node_records(prov: Provisioner, run_id: uuid.UUID) -> list[dict[str, Any]]:
    with prov.runtime.db.session() as s:
        row = s.get(RunNodes, run_id)
        return list(row.nodes or []) if row else []


# -- the release job -----------------------------------------------------------------------


async def release(prov: Provisioner, run_id: uuid.UUID) -> None:
    """The step: tear a releasing run's nodes down, announce NodesReleased."""
    releasing = await run_sync(_releasing, prov, run_id)
    if releasing is None:
        return
    ctx, provider, owner = releasing
    driver = prov.drivers(provider, owner)
    names = await teardown(prov, ctx, driver)
    await run_sync(_released, prov, run_id, names)


def _releasing(
    prov: Provisioner, run_id: uuid.UUID
) -> tuple[RunContext, str, uuid.UUID | None] | None:
    """A releasing run's context, provider and owner (None: not releasing)."""
    with prov.runtime.db.session() as s:
        row = s.get(RunNodes, run_id)
        if row is None or row.state != "releasing":
            return None
        return prov._context(row), row.provider, row.owner_id


def _released(prov: Provisioner, run_id: uuid.UUID, names: list[str]) -> None:
    with prov.runtime.db.session() as s:
        row = s.get(RunNodes, run_id, with_for_update=True)
        if row is None or row.state != "releasing" or not prov.leases.holds(row):
            return  # another replica took the run over: it releases the nodes
        prov.transition(s, row, "released", event=NodesReleased(nodes=names))
        s.commit()
    prov.runtime.published()


# -- sweeps: autostop and the reaper -------------------------------------------------------


async def sweep(prov: Provisioner) -> None:
    """One pass: release idle nodes (autostop), then reap leaked provider resources."""
    for run_id in await run_sync(_release_idle, prov):
        await prov._progress(run_id, "autostop", "nodes idle: releasing them", None)
        prov.schedule(run_id, "release")
    await reap(prov)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _release_idle(prov: Provisioner) -> list[uuid.UUID]:
    """Mark the ready runs idle past their autostop for release; their ids. Each is claimed
    first: a run another replica holds (or marked already) is left to it."""
    now = utcnow()
    with prov.runtime.db.session() as s:
        ready = s.exec(select(RunNodes).where(RunNodes.state == "ready")).all()
        candidates = [row.run_id for row in ready if _idle(row, now)]
    idle: list[uuid.UUID] = []
    for run_id in candidates:
        if not prov.leases.claim(run_id):
            continue
        with prov.runtime.db.session() as s:
            row = s.get(RunNodes, run_id, with_for_update=True)
            if row is not None and row.state == "ready" and _idle(row, now):
                prov.request_release(s, row, reason="autostop")
                s.commit()
                idle.append(run_id)  # the release job goes on under this lease
                continue
        prov.leases.release(run_id)  # busy again meanwhile
    return idle


def _idle(row: RunNodes, now: datetime) -> bool:
    """Nothing trains on or serves from the run's nodes, quiet past its autostop."""
    minutes = ProjectSpec.model_validate(row.spec).resources.autostop_minutes
    quiet = now - _aware(row.last_active_at) > timedelta(minutes=minutes)
    return not row.training and not row.serving and quiet


async def reap(prov: Provisioner) -> list[str]:
    """Ask every billed provider to delete resources of runs that have ended."""
    active, owners = await run_sync(_reap_scope, prov)
    removed: list[str] = []
    for owner in {None, *owners}:
        try:
            driver = prov.drivers("idc", owner)
            removed += await driver.reap(active_run_ids=active)
        except ProviderError as exc:
            log.debug("reaper skipped owner %s: %s", owner, exc.message)
        except Exception as exc:
            log.warning("reaper pass failed for owner %s: %s", owner, exc)
    return removed


def _reap_scope(prov: Provisioner) -> tuple[set[uuid.UUID], set[uuid.UUID | None]]:
    """The active runs, and the owners of billed (idc) runs."""
    with prov.runtime.db.session() as s:
        active = set(
            s.exec(
                select(RunNodes.run_id).where(col(RunNodes.state).in_(sorted(ACTIVE_STATES)))
            ).all()
        )
        owners = set(s.exec(select(RunNodes.owner_id).where(RunNodes.provider == "idc")).all())
    return active, owners


async def sweep_forever(prov: Provisioner) -> None:
    """:func:`sweep` every ``reaper_interval`` seconds; a failed pass is logged."""
    while True:
        await asyncio.sleep(prov.settings.reaper_interval)
        try:
            await sweep(prov)
        except Exception:
            log.exception("provisioner sweep failed")
