"""SSH failures as clear, retry-aware :class:`~shared.errors.ProviderError` s, one
classification for OpenSSH's stderr and for asyncssh's exceptions:

- ``host_key_mismatch`` (not retryable): the node's key is unknown or differs from the
  pinned one; trying again cannot help, someone has to look;
- ``ssh_auth_failed`` (not retryable): the key was refused;
- ``node_unreachable``: anything else; retryable when it looks transient (refused,
  timed out, no route)."""

from __future__ import annotations

from shared.errors import ProviderError

__all__ = ["classify_connect_error", "classify_ssh_failure"]

_TRANSIENT = ("Connection refused", "timed out", "No route to host", "unreachable")


def classify_ssh_failure(
    *, name: str, where: str, known_hosts: str | None, stderr: str
) -> ProviderError:
    """Turn OpenSSH's stderr for a failed connection (exit 255) to node ``name``
    (``where``: ``user@host:port``) into a clear, retry-aware error."""
    text = stderr.strip()
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or "Host key verification failed" in text:
        return ProviderError(
            f"node {name} ({where}): host key mismatch: the host's key differs from the"
            f" one recorded in {known_hosts}. If the host was reinstalled, remove its"
            f" entry; otherwise someone may be intercepting the connection. ssh said: {text}",
            code="host_key_mismatch",
        )
    if "Permission denied" in text:
        return ProviderError(
            f"node {name} ({where}): authentication refused (is the identity's public key"
            f" in the user's authorized_keys?). ssh said: {text}",
            code="ssh_auth_failed",
        )
    return ProviderError(
        f"node {name} ({where}) is unreachable: {text or 'ssh failed without a message'}",
        retryable=any(s in text for s in _TRANSIENT),
        code="node_unreachable",
    )


def classify_connect_error(
    exc: BaseException, *, name: str, known_hosts: str | None
) -> ProviderError:
    """Turn an asyncssh connection failure (``OSError`` or ``asyncssh.Error``) to node
    ``name`` into the same classification as :func:`classify_ssh_failure`."""
    import asyncssh

    prefix = f"cannot reach node {name} over SSH: {exc}"
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        pinned = known_hosts or "~/.ssh/known_hosts"
        return ProviderError(
            f"{prefix} (host key mismatch: the host's key is not the one recorded in"
            f" {pinned}; if the host was reinstalled, update its entry; otherwise someone"
            " may be intercepting the connection)",
            code="host_key_mismatch",
        )
    if isinstance(exc, asyncssh.PermissionDenied):
        return ProviderError(
            f"{prefix} (authentication refused: is the key's public half in the user's"
            " authorized_keys?)",
            code="ssh_auth_failed",
        )
    return ProviderError(prefix, retryable=True, code="node_unreachable")
