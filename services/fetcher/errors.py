"""The one failure type of a fetch: a message a newcomer understands, and whether retrying helps."""

from __future__ import annotations

from shared.errors import ProviderError

__all__ = ["FetchCancelled", "FetchFailed"]


class FetchFailed(ProviderError):
    """A source could not be cached; ``message`` goes into ``ArtifactsFailed.reason``."""

    code = "fetch_failed"


class FetchCancelled(Exception):
    """The run was cancelled while its artifacts were being fetched."""
