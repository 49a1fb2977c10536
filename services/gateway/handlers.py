"""Event handlers of the gateway service: every status event goes into the event log.

The shared ``gateway`` queue is consumed with prefetch 1 so events are stored in the order
they were published; each stored event is handed to this process's WebSocket hub.
"""

from __future__ import annotations

import asyncio

from services.gateway.eventlog import append
from services.gateway.fanout import Hub
from services.gateway.metrics import GatewayMetrics
from shared.events import STATUS_EVENT_TYPES, Envelope
from shared.runtime import EventHandler, ServiceRuntime

__all__ = ["build_handlers"]


def build_handlers(
    runtime: ServiceRuntime, *, hub: Hub, metrics: GatewayMetrics
) -> dict[str, EventHandler]:
    """Event type -> handler; the service queue is bound to exactly these types."""

    async def on_status_event(envelope: Envelope) -> None:
        frame = await asyncio.to_thread(append, runtime.db, envelope)
        if frame is not None:
            metrics.stored.inc()
            hub.dispatch(frame)

    return {event_type: on_status_event for event_type in STATUS_EVENT_TYPES}
