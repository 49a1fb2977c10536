"""Event handlers of the fetcher service: thin, they call the service logic."""

from __future__ import annotations

from shared.runtime import EventHandler, ServiceRuntime

__all__ = ["build_handlers"]


def build_handlers(runtime: ServiceRuntime) -> dict[str, EventHandler]:
    """Event type -> handler; the service queue is bound to exactly these types."""
    return {}
