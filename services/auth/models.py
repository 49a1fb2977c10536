"""Tables owned by the auth service (names prefixed ``auth_``)."""

from __future__ import annotations

__all__: list[str] = []
