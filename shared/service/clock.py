"""The one clock of the platform.

``utcnow()`` is the only "now" services and the shared library use: timezone-aware UTC,
so comparisons with stored timestamps never mix naive and aware values (SQLite returns
naive datetimes; read them through an ``aware()`` helper before comparing).
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["utcnow"]


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)
