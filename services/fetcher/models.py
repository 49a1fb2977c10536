"""Tables owned by the fetcher service (names prefixed ``fetcher_``)."""

from __future__ import annotations

__all__: list[str] = []
