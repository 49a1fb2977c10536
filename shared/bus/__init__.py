"""The event bus: one interface, chosen by URL (``memory://`` or ``amqp(s)://``)."""

from __future__ import annotations

from shared.bus.base import (
    DEAD_LETTER_QUEUE,
    EXCHANGE,
    Bus,
    Handler,
    PublishFailed,
    PublishTimeout,
    UnroutableError,
)

__all__ = [
    "DEAD_LETTER_QUEUE",
    "EXCHANGE",
    "Bus",
    "Handler",
    "PublishFailed",
    "PublishTimeout",
    "UnroutableError",
    "create_bus",
]


def create_bus(url: str, **options: object) -> Bus:
    """Return the bus implementation for ``url`` (not yet connected)."""
    if url.startswith("memory://"):
        from shared.bus.memory import MemoryBus

        return MemoryBus(url, **options)  # type: ignore[arg-type]
    if url.startswith(("amqp://", "amqps://")):
        from shared.bus.rabbit import RabbitBus

        return RabbitBus(url, **options)  # type: ignore[arg-type]
    raise ValueError(f"unsupported bus URL scheme: {url.split('://')[0]!r}")
