"""The one rule for database access from async code: never block the event loop.

Every service runs one event loop (bus handlers, HTTP routes, background jobs). A
synchronous SQLAlchemy call — ``with db.session()``, ``session.execute``, ``commit``, a
plain method that opens a session — holds that loop for a whole round trip (or for the
``busy_timeout`` of a locked SQLite file, or a dead PostgreSQL connection's timeout), and
every other handler and request of the service waits behind it.

So async code reaches the database in exactly two ways:

- **reads on hot routes**: :attr:`Database.aio <shared.db.Database.aio>`
  (``await db.aio.fetch(...)``, :mod:`shared.db.aio`), async drivers, no thread hop;
- **everything else** (ORM, writes, the outbox, the inbox): a *synchronous* function that
  opens its own session, does the whole unit of work and commits, called through
  ``await run_sync(fn, *args, **kwargs)``. One hop per unit of work: put the reads and
  writes that belong together in one function instead of hopping per statement, and
  ``await`` nothing between :func:`~shared.outbox.claim_inbox` and the commit.

Other blocking work (a download, a subprocess, Vault) stays on ``asyncio.to_thread``,
even when it records something in the database at the end: ``run_sync``'s cancellation
waits for the work (below), which a long job must not impose on its canceller.

``tests/unit/test_async_rule.py`` scans ``services/`` and ``shared/`` and fails on any
``async def`` that opens a session, uses one, calls a plain function that does, or sends
a unit of database work to a thread without ``run_sync``. It cannot see through callbacks:
keep database work out of a callback that async code calls. A line that must break the
rule says why with ``# async-rule: ok <reason>`` (rare).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["run_sync"]

P = ParamSpec("P")
T = TypeVar("T")


async def run_sync(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run blocking database work ``fn(*args, **kwargs)`` in a worker thread and await it.

    The worker is the loop's default executor; the caller's context variables — the
    current trace span, log fields — go along (as with ``asyncio.to_thread``), so spans
    and logs opened inside ``fn`` join the caller's trace.

    Cancellation: a thread cannot be stopped, so a cancelled caller first waits for ``fn``
    to end (its session committed or rolled back) and then raises ``CancelledError``.
    Whoever cancelled a job and then reads what it wrote (a release reading the nodes a
    provisioning job recorded) sees every write the job started — ``asyncio.to_thread``
    would let the job end while its last write is still running.
    """
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    call = functools.partial(context.run, fn, *args, **kwargs)
    work: asyncio.Future[T] = loop.run_in_executor(None, call)
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        while not work.done():
            try:
                await asyncio.wait({work})
            except asyncio.CancelledError:
                continue  # cancelled again: the work still has to end first
        if not work.cancelled():
            work.exception()  # retrieved: the caller was cancelled, its error is moot
        raise
