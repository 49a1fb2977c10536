"""The provisioning job: ``requested → provisioning → ready`` (or ``failed``) for one run.

:func:`provision` checks every choice the spec leaves (accelerator, credentials, price
caps, allow-list) before anything is created, resolves (or reuses) the environment's lock,
creates and checks the run's nodes in parallel, configures the environment on them and
announces ``NodesReady``. A choice without capacity (:func:`no_capacity`) gives back what
it made and the run moves to the next choice (``ProvisioningProgress`` stage ``fallback``);
any other failure tears the nodes down and announces ``NodesFailed``.

:func:`reserve` and :func:`create_nodes` are also the replacement job's steps
(:mod:`services.provisioner.replacement`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from services.provisioner.drivers.base import Node, NodeDriver, RunContext
from services.provisioner.drivers.sshcmd import detect_run_user
from services.provisioner.envs.builder import LockResult
from services.provisioner.models import RunNodes
from services.provisioner.release import teardown
from shared.db import run_sync
from shared.errors import AidpError, ProviderError, dependency_outage
from shared.events import EnvInfo, NodesFailed, NodesReady
from shared.service.clock import utcnow
from shared.spec import Choice, ProjectSpec

if TYPE_CHECKING:
    from services.provisioner.service import Provisioner

__all__ = ["CAPACITY_CODES", "create_nodes", "no_capacity", "provision", "reserve"]

log = logging.getLogger(__name__)

#: ProviderError codes that mean "not here, not now": the next choice is tried.
CAPACITY_CODES = frozenset({"no_capacity", "quota_exceeded"})


def no_capacity(exc: BaseException) -> bool:
    """True when ``exc`` says the provider lacks capacity (or a quota is hit) for the
    requested instance type: a reason to try the spec's next choice, not to fail."""
    if not isinstance(exc, ProviderError):
        return False
    if exc.code in CAPACITY_CODES:
        return True
    return exc.code == "instance_failed" and "capacity" in exc.message.lower()


async def provision(prov: Provisioner, run_id: uuid.UUID) -> None:
    """The job: provision a ``requested`` (or resumed ``provisioning``) run's nodes."""
    started = await run_sync(_start_provisioning, prov, run_id)
    if started is None:
        return
    ctx, provider, owner, index, choices = started
    driver = prov.drivers(provider, owner)
    step = "check"
    try:
        await _check_choices(prov, ctx, choices[index:], owner)
        ctx = await run_sync(reserve, prov, ctx, driver, owner)
        step = "lock"
        await prov._progress(run_id, "lock", "resolving the environment's packages", 2)
        lock = await _lock(prov, ctx)
        await run_sync(prov._update, run_id, lock_hash=lock.lock_hash, lock=lock.text)
        step = "nodes"
        while True:
            try:
                nodes = await create_nodes(prov, ctx, driver)
                break
            except ProviderError as exc:
                if not no_capacity(exc) or index + 1 >= len(choices):
                    raise
                ctx, driver = await _fall_back(prov, ctx, driver, choices, index, exc)
                index += 1
                ctx = await run_sync(reserve, prov, ctx, driver, owner)  # its price
        step = "configure"
        env = await prov.builder.configure(
            spec=ctx.spec,
            lock=lock,
            nodes=nodes,
            driver=driver,
            private_dir=ctx.state_dir / "configure",
            progress=lambda stage, message, pct: prov._progress(run_id, stage, message, pct),
            cancel=prov._cancel.setdefault(run_id, threading.Event()),
        )
        if driver.capabilities.remote:  # node_base made a run user where it could
            users = await asyncio.gather(*(detect_run_user(driver, n) for n in nodes))
            nodes = [
                replace(n, extra={**n.extra, "run_user": u})
                for n, u in zip(nodes, users, strict=True)
            ]
    except asyncio.CancelledError:
        raise  # a release took over; it tears the nodes down
    except Exception as exc:
        if dependency_outage(exc) is not None:
            raise  # not the run's failure: the guard runs the job again once it is back
        await _fail(prov, ctx, driver, step=step, exc=exc)
        return
    await run_sync(_ready, prov, run_id, nodes, env)


async def _lock(prov: Provisioner, ctx: RunContext) -> LockResult:
    """The stored lock of the run's environment, resolved (once) when there is none."""
    lock = await run_sync(prov.locks.load, prov.builder.input_key(ctx.spec))
    if lock is None:
        await run_sync(prov.locks.save, await prov.builder.resolve(ctx.spec))
        lock = await run_sync(prov.locks.load, prov.builder.input_key(ctx.spec))
    if lock is None:
        raise RuntimeError("the lock just stored is missing")
    return lock


def _start_provisioning(
    prov: Provisioner, run_id: uuid.UUID
) -> tuple[RunContext, str, uuid.UUID | None, int, list[Choice]] | None:
    """Move the run to ``provisioning`` (one more attempt): its context, provider,
    owner, current choice and choices; None when it is not to be provisioned."""
    with prov.runtime.db.session() as s:
        row = s.get(RunNodes, run_id, with_for_update=True)
        if row is None or row.state not in ("requested", "provisioning"):
            return None
        if not prov.leases.holds(row):
            return None  # another replica took the run over
        prov.transition(s, row, "provisioning", attempts=row.attempts + 1)
        s.commit()
        s.refresh(row)
        choices = ProjectSpec.model_validate(row.spec).resources.choices()
        return prov._context(row), row.provider, row.owner_id, row.choice, choices


async def _check_choices(
    prov: Provisioner, ctx: RunContext, choices: list[Choice], owner: uuid.UUID | None
) -> None:
    """Every choice left must pass its driver's check (accelerator, credentials, price
    caps, allow-list) before anything is created: a fallback is never a way around a
    limit."""
    full = ProjectSpec.model_validate(await run_sync(_row_spec, prov, ctx.run_id))
    for choice in choices:
        narrowed = replace(ctx, spec=full.narrowed(choice))
        try:
            await prov.drivers(choice.provider, owner).check_request(narrowed)
        except ProviderError as exc:
            if len(choices) == 1:
                raise
            raise ProviderError(
                f"{choice.label()}: {exc.message}", code=exc.code, retryable=exc.retryable
            ) from exc


def _row_spec(prov: Provisioner, run_id: uuid.UUID) -> dict[str, Any]:
    with prov.runtime.db.session() as s:
        row = s.get(RunNodes, run_id)
        return dict(row.spec) if row is not None else {}


def reserve(
    prov: Provisioner, ctx: RunContext, driver: NodeDriver, owner: uuid.UUID | None
) -> RunContext:
    """Record the choice's price and account (the per-user cap is checked here)."""
    billing = driver.billing(ctx)
    if billing is not None and prov.cloud_access is not None:
        prov.cloud_access.reserve(ctx.run_id, owner, billing)
        return replace(ctx, credential_source=billing.source)
    return ctx


async def create_nodes(prov: Provisioner, ctx: RunContext, driver: NodeDriver) -> list[Node]:
    """Create and check every node of the run (in parallel); the first error raises
    once all have ended (what was created is recorded for the teardown)."""
    run_id, count = ctx.run_id, ctx.spec.resources.nodes
    where = ctx.spec.resources.instance_type or driver.name
    message = f"creating {count} {driver.name} node(s)"
    if where != driver.name:
        message += f" ({where})"
    await prov._progress(run_id, "nodes", message, 5)

    async def one(index: int) -> Node:
        node = await prov._retrying(run_id, lambda: driver.create_node(ctx, index))
        await run_sync(prov._add_node, run_id, node)
        node = await driver.check_node(ctx, node)
        await run_sync(prov._add_node, run_id, node)
        return node

    results = await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise errors[0]
    return [r for r in results if isinstance(r, Node)]


async def _fall_back(
    prov: Provisioner,
    ctx: RunContext,
    driver: NodeDriver,
    choices: list[Choice],
    index: int,
    exc: ProviderError,
) -> tuple[RunContext, NodeDriver]:
    """Give back what choice ``index`` created and move the run to the next choice,
    saying why (ProvisioningProgress stage ``fallback``)."""
    here, there = choices[index], choices[index + 1]
    await prov._progress(
        ctx.run_id,
        "fallback",
        f"{here.label()} has no capacity ({exc.message}); trying {there.label()}",
        None,
    )
    await teardown(prov, ctx, driver, keep_state=True)
    fresh = await run_sync(_next_choice, prov, ctx.run_id, index + 1, there)
    if fresh is None:
        raise asyncio.CancelledError  # released meanwhile
    return fresh, prov.drivers(there.provider, fresh.owner_id)


def _next_choice(
    prov: Provisioner, run_id: uuid.UUID, index: int, choice: Choice
) -> RunContext | None:
    """Point a provisioning run at choice ``index``; None if it was released meanwhile."""
    with prov.runtime.db.session() as s:
        row = s.get(RunNodes, run_id, with_for_update=True)
        if row is None or row.state != "provisioning":
            return None
        row.choice, row.provider, row.nodes = index, choice.provider, []
        row.credential_source, row.hourly_usd = None, None
        row.updated_at = utcnow()
        s.add(row)
        s.commit()
        s.refresh(row)
        return prov._context(row)


def _ready(prov: Provisioner, run_id: uuid.UUID, nodes: list[Node], env: dict[str, Any]) -> None:
    infos = [
        node.info(python=env["python"]).model_copy(update={"run_user": node.extra.get("run_user")})
        for node in nodes
    ]
    payload = NodesReady(
        nodes=infos,
        env=EnvInfo(
            lock_hash=env["lock_hash"],
            python=env["python"],
            torch_version=env["torch_version"],
            accelerator=env["accelerator"],
            framework=env.get("framework") or "pytorch",
            tensorflow_version=env.get("tensorflow_version") or "",
            keras_version=env.get("keras_version") or "",
        ),
    )
    with prov.runtime.db.session() as s:
        row = s.get(RunNodes, run_id, with_for_update=True)
        if row is None or row.state != "provisioning" or not prov.leases.holds(row):
            return  # released meanwhile (the release step owns the nodes), or taken over
        prov.transition(
            s,
            row,
            "ready",
            event=payload,
            env=env,
            nodes=[n.record() for n in nodes],
            last_active_at=utcnow(),
        )
        s.commit()
    prov.runtime.published()


async def _fail(
    prov: Provisioner, ctx: RunContext, driver: NodeDriver, *, step: str, exc: Exception
) -> None:
    if isinstance(exc, AidpError):
        reason, retryable = exc.message, exc.retryable
    else:
        log.exception("provisioning %s failed unexpectedly", ctx.run_id)
        reason, retryable = f"{type(exc).__name__}: {exc}", False
    await prov._progress(ctx.run_id, "teardown", f"{step} failed; removing nodes", None)
    await teardown(prov, ctx, driver)
    await run_sync(_record_failure, prov, ctx.run_id, reason, retryable, step)


def _record_failure(
    prov: Provisioner, run_id: uuid.UUID, reason: str, retryable: bool, step: str
) -> None:
    with prov.runtime.db.session() as s:
        row = s.get(RunNodes, run_id, with_for_update=True)
        if row is None or not prov.leases.holds(row):
            return  # another replica took the run over: its attempt decides
        event = NodesFailed(reason=reason, retryable=retryable, step=step)
        prov.transition(s, row, "failed", event=event, error=reason, failed_step=step)
        s.commit()
    prov.runtime.published()
