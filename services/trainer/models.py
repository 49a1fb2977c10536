"""Tables owned by the trainer service (names prefixed ``trainer_``)."""

from __future__ import annotations

__all__: list[str] = []
