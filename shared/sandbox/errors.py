"""The one error of the sandbox."""

from __future__ import annotations

from shared.errors import ProviderError

__all__ = ["SandboxError"]


class SandboxError(ProviderError):
    """The sandbox could not be set up; the message names the cause and the fix.

    Not retryable: a host that cannot sandbox today will not sandbox on a retry.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, code="sandbox_unavailable", retryable=False)
