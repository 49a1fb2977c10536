"""Event handlers of the gateway service: every status event goes into the event log.

Handlers submit to the :class:`~services.gateway.writer.LogWriter` (group commit, in
delivery order) and return once their event is committed, so the bus acks after commit.
"""

from __future__ import annotations

from services.gateway.writer import LogWriter
from shared.events import STATUS_EVENT_TYPES, Envelope
from shared.runtime import EventHandler

__all__ = ["build_handlers"]


def build_handlers(writer: LogWriter) -> dict[str, EventHandler]:
    """Event type -> handler; the service queue is bound to exactly these types."""

    async def on_status_event(envelope: Envelope) -> None:
        await writer.submit(envelope)

    return {event_type: on_status_event for event_type in STATUS_EVENT_TYPES}
