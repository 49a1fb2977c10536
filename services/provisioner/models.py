"""Tables owned by the provisioner service (names prefixed ``provisioner_``)."""

from __future__ import annotations

__all__: list[str] = []
