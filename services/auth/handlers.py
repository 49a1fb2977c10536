"""Event handlers of the auth service: thin, they call the service logic."""

from __future__ import annotations

from services.auth.context import AuthContext
from shared.runtime import EventHandler, ServiceRuntime

__all__ = ["build_handlers"]


def build_handlers(runtime: ServiceRuntime, ctx: AuthContext) -> dict[str, EventHandler]:
    """Event type -> handler; the service queue is bound to exactly these types. Built in the
    lifespan's wiring phase (``ctx`` exists), before the queue is subscribed."""
    return {}
