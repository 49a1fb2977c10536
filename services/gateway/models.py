"""Tables owned by the gateway service (names prefixed ``gateway_``)."""

from __future__ import annotations

__all__: list[str] = []
