"""Node replacement (issue 19 item 4): a node the trainer lost is replaced by the same driver.

The trainer announces ``NodeLost`` (an SSH connection that dropped or failed keepalives, a
node silent past ``AIDP_TRAINER_NODE_TIMEOUT_SECONDS`` that does not answer again). The
handler moves the run ``ready → replacing`` and keeps the lost nodes' records in
``provisioner_runs.lost`` (``pending`` until replaced); the job terminates each lost node
(for IDC: deletes the instance, if the cloud has not already), asks the driver for a
replacement (:meth:`~services.provisioner.drivers.base.NodeDriver.replace_node`: a new IDC
instance, the next free host of ``resources.hosts``), checks it, configures the run's
environment on it (the same lock) and announces ``NodesReplaced`` with the whole node list
(``replacing → ready``); the trainer resumes the run from its last checkpoint.

``NodeLost`` with ``larger`` (the training ran out of memory and the spec says
``retry_larger_on_oom``) moves every node to the run's next choice instead (:func:`_grow`),
once per run.

A run has at most ``AIDP_MAX_NODE_REPLACEMENTS`` nodes replaced; a loss past that, or a
replacement that cannot be made, is ``NodesFailed`` (``step: replace``) and the trainer
fails the run (its TrainingFailed releases the nodes). Spot instances that the cloud takes
back take the same path.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Awaitable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlmodel import Session

from services.provisioner.drivers.base import Node, NodeDriver, RunContext
from services.provisioner.drivers.sshcmd import detect_run_user
from services.provisioner.models import RunNodes
from services.provisioner.provisioning import create_nodes, reserve
from services.provisioner.release import teardown
from shared.db import run_sync
from shared.errors import AidpError, dependency_outage
from shared.events import Envelope, NodeLost, NodesFailed, NodesReplaced
from shared.spec import Choice, ProjectSpec

if TYPE_CHECKING:
    from services.provisioner.service import Provisioner

__all__ = ["record_loss", "replace_lost"]

log = logging.getLogger(__name__)


def record_loss(
    prov: Provisioner, session: Session, row: RunNodes, lost: NodeLost, *, cause: Envelope
) -> bool:
    """Handler side: mark the run's lost nodes for replacement. True when a replacement
    job should start; a loss past the budget (or of unknown nodes) fails it at once."""
    if row.state != "ready":
        return False  # released meanwhile, or a replacement already under way
    records = [n for n in row.nodes or [] if n.get("name") in set(lost.nodes)]
    budget = prov.settings.max_node_replacements
    problem = None
    if lost.larger:  # out of memory: every node moves to the next choice, once
        records = list(row.nodes or [])
        choices = ProjectSpec.model_validate(row.spec).resources.choices()
        if row.grown:
            problem = f"{lost.reason}; retry_larger_on_oom retries once, on {row.provider} already"
        elif row.choice + 1 >= len(choices):
            problem = f"{lost.reason}; no larger choice is left to retry on"
    elif not records:
        problem = f"NodeLost names no node of the run ({', '.join(lost.nodes)[:200]})"
    elif row.replacements + len(records) > budget:
        problem = (
            f"{lost.reason}; the run already had {row.replacements} node(s) replaced, and"
            f" AIDP_MAX_NODE_REPLACEMENTS allows {budget}"
        )
    if problem is not None:
        event = NodesFailed(reason=problem[:2000], retryable=False, step="replace")
        prov.runtime.stage(
            session,
            _event(event, row, cause),
        )
        return False
    pending = [
        {**record, "pending": True, "reason": lost.reason[:500], "larger": lost.larger}
        for record in records
    ]
    prov.transition(session, row, "replacing", lost=[*(row.lost or []), *pending], cause=cause)
    return True


def _event(payload: Any, row: RunNodes, cause: Envelope | None) -> Envelope:
    from shared.events import new_event

    return new_event(payload, project_id=row.project_id, run_id=row.run_id, cause=cause)


class _Loss(NamedTuple):
    """A ``replacing`` run's lost nodes, as the job starts on them."""

    ctx: RunContext
    driver: NodeDriver
    history: list[Node]  # every node the run ever lost
    pending: list[Node]  # those still to replace
    current: list[Node]
    reason: str
    lock_hash: str | None
    larger: bool  # out of memory: move every node to the next choice


def _loss(prov: Provisioner, run_id: uuid.UUID) -> _Loss | None:
    with prov.runtime.db.session() as s:
        row = s.get(RunNodes, run_id)
        if row is None or row.state != "replacing":
            return None
        lost = row.lost or []
        return _Loss(
            ctx=prov._context(row),
            driver=prov.drivers(row.provider, row.owner_id),
            history=[Node.from_record(_node_fields(r)) for r in lost],
            pending=[Node.from_record(_node_fields(r)) for r in lost if r.get("pending")],
            current=[Node.from_record(r) for r in row.nodes or []],
            reason=next((str(r.get("reason") or "") for r in lost if r.get("pending")), ""),
            lock_hash=row.lock_hash,
            larger=any(r.get("larger") for r in lost if r.get("pending")),
        )


async def replace_lost(prov: Provisioner, run_id: uuid.UUID) -> None:
    """The job: replace every pending lost node of a ``replacing`` run, then NodesReplaced."""
    loss = await run_sync(_loss, prov, run_id)
    if loss is None:
        return
    ctx, driver, history, pending, current, reason, lock_hash, larger = loss
    if larger:
        await _grow(prov, run_id, reason)
        return
    names = ", ".join(n.name for n in pending)
    try:
        lock = await run_sync(prov.locks.load, prov.builder.input_key(ctx.spec))
        if lock is None or lock.lock_hash != lock_hash:
            raise RuntimeError("the run's environment lock is missing")
        await prov._progress(run_id, "replace", f"node {names} lost ({reason}): replacing it", None)
        keep = [n for n in current if n.name not in {p.name for p in pending}]
        fresh: list[Node] = []
        for lost in pending:
            try:  # the instance may still exist (a node that only went silent): delete it
                await driver.terminate_node(ctx, lost)
            except Exception as exc:
                log.info("terminating lost node %s: %s", lost.name, exc)
            avoid = [*keep, *fresh, *history]

            def make(lost: Node = lost, avoid: list[Node] = avoid) -> Awaitable[Node]:
                return driver.replace_node(ctx, lost, avoid=avoid)

            node = await prov._retrying(run_id, make)
            await run_sync(prov._add_node, run_id, node)
            node = await driver.check_node(ctx, node)
            await run_sync(prov._add_node, run_id, node)
            await prov._progress(
                run_id, "replace", f"{node.name}: replacement at {node.address} reachable", None
            )
            fresh.append(node)
        env = await prov.builder.configure(
            spec=ctx.spec,
            lock=lock,
            nodes=fresh,
            driver=driver,
            private_dir=ctx.state_dir / "configure",
            progress=lambda stage, message, pct: prov._progress(run_id, stage, message, pct),
            cancel=prov._cancel.setdefault(run_id, threading.Event()),
        )
        if driver.capabilities.remote:
            users = await asyncio.gather(*(detect_run_user(driver, n) for n in fresh))
            fresh = [
                replace(n, extra={**n.extra, "run_user": u})
                for n, u in zip(fresh, users, strict=True)
            ]
    except asyncio.CancelledError:
        raise  # a release took over
    except Exception as exc:
        if dependency_outage(exc) is not None:
            raise  # the guard runs the job again once the database is back
        if isinstance(exc, AidpError):
            message = exc.message
        else:
            log.exception("replacing nodes of run %s failed unexpectedly", run_id)
            message = f"{type(exc).__name__}: {exc}"
        await run_sync(
            _replace_failed, prov, run_id, f"replacing lost node {names} failed: {message}"
        )
        return
    nodes = sorted([*keep, *fresh], key=lambda n: n.index)
    await run_sync(_replaced, prov, run_id, nodes=nodes, env=env)


def _node_fields(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("pending", "reason", "larger")}


async def _grow(prov: Provisioner, run_id: uuid.UUID, reason: str) -> None:
    """Out of memory (``retry_larger_on_oom``): give back every node of the run and make
    them again with the run's next choice (instance type or fallback provider), once."""
    plan = await run_sync(_growth, prov, run_id)
    if plan is None:
        return
    ctx, driver, moved, here, there, owner = plan
    try:
        lock = await run_sync(prov.locks.load, prov.builder.input_key(ctx.spec))
        if lock is None:
            raise RuntimeError("the run's environment lock is missing")
        if not moved:
            await prov._progress(
                run_id,
                "larger",
                f"{reason}: retrying on {there.label()} (was {here.label()})",
                None,
            )
            await teardown(prov, ctx, driver, keep_state=True)
            grown = await run_sync(_move_up, prov, run_id, there)
            if grown is None:
                return
            ctx = grown
        driver = prov.drivers(there.provider, owner)
        await driver.check_request(ctx)
        ctx = await run_sync(reserve, prov, ctx, driver, owner)
        nodes = await create_nodes(prov, ctx, driver)
        env = await prov.builder.configure(
            spec=ctx.spec,
            lock=lock,
            nodes=nodes,
            driver=driver,
            private_dir=ctx.state_dir / "configure",
            progress=lambda stage, message, pct: prov._progress(run_id, stage, message, pct),
            cancel=prov._cancel.setdefault(run_id, threading.Event()),
        )
        if driver.capabilities.remote:
            users = await asyncio.gather(*(detect_run_user(driver, n) for n in nodes))
            nodes = [
                replace(n, extra={**n.extra, "run_user": u})
                for n, u in zip(nodes, users, strict=True)
            ]
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if dependency_outage(exc) is not None:
            raise
        if isinstance(exc, AidpError):
            message = exc.message
        else:
            log.exception("moving run %s to a larger choice failed unexpectedly", run_id)
            message = f"{type(exc).__name__}: {exc}"
        await run_sync(
            _replace_failed, prov, run_id, f"retrying on {there.label()} failed: {message}"
        )
        return
    await run_sync(_replaced, prov, run_id, nodes=nodes, env=env)


def _growth(
    prov: Provisioner, run_id: uuid.UUID
) -> tuple[RunContext, NodeDriver, bool, Choice, Choice, uuid.UUID | None] | None:
    """A growing run's context and driver, whether it moved already, the choice it leaves
    and the one it moves to, its owner; None when it is not ``replacing``."""
    with prov.runtime.db.session() as s:
        row = s.get(RunNodes, run_id)
        if row is None or row.state != "replacing":
            return None
        ctx = prov._context(row)
        driver = prov.drivers(row.provider, row.owner_id)
        choices = ProjectSpec.model_validate(row.spec).resources.choices()
        moved = row.grown  # a restart after the move: only the new nodes are left to make
        here = choices[row.choice - 1 if moved else row.choice]
        there = choices[row.choice if moved else row.choice + 1]
        return ctx, driver, moved, here, there, row.owner_id


def _move_up(prov: Provisioner, run_id: uuid.UUID, there: Choice) -> RunContext | None:
    """Point the run at its next choice (once); None when it is not ``replacing``."""
    with prov.runtime.db.session() as s:
        row = s.get(RunNodes, run_id, with_for_update=True)
        if row is None or row.state != "replacing":
            return None
        row.choice, row.provider, row.nodes = row.choice + 1, there.provider, []
        row.grown, row.credential_source, row.hourly_usd = True, None, None
        s.add(row)
        s.commit()
        s.refresh(row)
        return prov._context(row)


def _replaced(
    prov: Provisioner, run_id: uuid.UUID, *, nodes: list[Node], env: dict[str, Any]
) -> None:
    with prov.runtime.db.session() as s:
        row = s.get(RunNodes, run_id, with_for_update=True)
        if row is None or row.state != "replacing" or not prov.leases.holds(row):
            return  # released meanwhile, or taken over by another replica
        lost = [r for r in row.lost or [] if r.get("pending")]
        grew = any(r.get("larger") for r in lost)
        python = env.get("python") or (row.env or {}).get("python")
        infos = [
            n.info(python=python).model_copy(update={"run_user": n.extra.get("run_user")})
            for n in nodes
        ]
        count = row.replacements + (0 if grew else len(lost))
        event = NodesReplaced(
            nodes=infos,
            replaced=[str(r["name"]) for r in lost],
            reason=str(lost[0].get("reason") or "") if lost else "",
            replacements=count,
        )
        prov.transition(
            s,
            row,
            "ready",
            event=event,
            nodes=[n.record() for n in nodes],
            lost=[{**r, "pending": False} for r in row.lost or []],
            replacements=count,
            env={**(row.env or {}), **env} if grew else row.env,
        )
        s.commit()
    prov.runtime.published()


def _replace_failed(prov: Provisioner, run_id: uuid.UUID, reason: str) -> None:
    """Back to ``ready`` with what exists (the trainer fails the run on NodesFailed and its
    TrainingFailed releases every recorded node, replacements made so far included)."""
    with prov.runtime.db.session() as s:
        row = s.get(RunNodes, run_id, with_for_update=True)
        if row is None or row.state != "replacing" or not prov.leases.holds(row):
            return
        event = NodesFailed(reason=reason[:2000], retryable=False, step="replace")
        prov.transition(s, row, "ready", event=event, error=reason[:2000])
        s.commit()
    prov.runtime.published()
