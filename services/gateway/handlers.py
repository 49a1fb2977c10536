"""Event handlers of the gateway service.

- Every status event goes into the event log: handlers submit to the
  :class:`~services.gateway.writer.LogWriter` (group commit, in delivery order) and return
  once their event is committed, so the bus acks after commit.
- Identity events (``SessionsRevoked``, ``SigningKeyRevoked``, ``MembershipChanged``)
  arrive on each process's broadcast subscription and update its in-memory state: revoked
  sessions and keys, open sockets.
"""

from __future__ import annotations

from services.gateway.sessions import SessionRegistry
from services.gateway.writer import LogWriter
from services.gateway.wsguard import SessionGuard
from shared.events import (
    STATUS_EVENT_TYPES,
    Envelope,
    MembershipChanged,
    SigningKeyRevoked,
    parse_payload,
)
from shared.runtime import EventHandler

__all__ = ["build_handlers", "identity_events"]


def build_handlers(writer: LogWriter) -> dict[str, EventHandler]:
    """Event type -> handler; the service queue is bound to exactly these types."""

    async def on_status_event(envelope: Envelope) -> None:
        await writer.submit(envelope)

    return {event_type: on_status_event for event_type in STATUS_EVENT_TYPES}


def identity_events(sessions: SessionRegistry, guard: SessionGuard) -> EventHandler:
    """The broadcast handler: session revocations to the session registry (which tells the
    guard), revoked signing keys and role changes to the guard."""

    async def on_identity_event(envelope: Envelope) -> None:
        if envelope.type == SigningKeyRevoked.event_type():
            payload = parse_payload(envelope)
            if isinstance(payload, SigningKeyRevoked):
                guard.on_key_revoked(payload.kid)
        elif envelope.type == MembershipChanged.event_type():
            payload = parse_payload(envelope)
            if isinstance(payload, MembershipChanged) and envelope.project_id is not None:
                guard.on_membership_changed(envelope.project_id, payload.user_id)
        else:
            await sessions.on_event(envelope)

    return on_identity_event
