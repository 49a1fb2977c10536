"""Two-phase start: wire everything, then subscribe (issue 17 item 1).

The bus delivers as soon as a service subscribes, so a handler that needs something built
from the opened resources (the key service, a cache over the encrypted store, a job runner)
must not be reachable before it exists. :func:`two_phase` orders the start:

1. ``runtime.open()``: migrated database, Vault, service auth, connected bus — no delivery;
2. ``await wire()``: the service builds what needs those resources and registers its
   handlers (``runtime.on``);
3. ``runtime.subscribe()``: the queue is bound to the registered types, the outbox relay
   starts, readiness turns true.

On exit the runtime stops (readiness false, bus closed, background tasks cancelled).
Services whose handlers need nothing built at start use ``runtime.lifespan()`` (open and
subscribe at once).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from shared.runtime import ServiceRuntime

__all__ = ["two_phase"]


@asynccontextmanager
async def two_phase(
    runtime: ServiceRuntime, wire: Callable[[], Awaitable[None]]
) -> AsyncIterator[ServiceRuntime]:
    """Open ``runtime``, await ``wire()``, then subscribe; stop the runtime on exit."""
    await runtime.open()
    try:
        await wire()
        await runtime.subscribe()
        yield runtime
    finally:
        await runtime.stop()
