"""Event handlers of the auth service: thin, they call the service logic."""

from __future__ import annotations

import asyncio

from services.auth.context import AuthContext
from shared.events import Envelope, SigningKeyRevoked, parse_payload
from shared.runtime import EventHandler, ServiceRuntime

__all__ = ["build_handlers", "identity_events"]


def build_handlers(runtime: ServiceRuntime, ctx: AuthContext) -> dict[str, EventHandler]:
    """Event type -> handler; the service queue is bound to exactly these types. Built in the
    lifespan's wiring phase (``ctx`` exists), before the queue is subscribed."""
    return {}


def identity_events(ctx: AuthContext) -> EventHandler:
    """The broadcast handler (every auth process has its own queue): a signing key another
    replica revoked stops verifying here at once, not at the next periodic keyring read."""

    async def on_identity_event(envelope: Envelope) -> None:
        payload = parse_payload(envelope)
        if isinstance(payload, SigningKeyRevoked):
            await asyncio.to_thread(ctx.keyring.forget, payload.kid)

    return on_identity_event
