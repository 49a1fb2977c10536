"""An asyncssh connection to a node from its :class:`~shared.nodes.transport.NodeAccess`
(the trainer's: one long-lived connection per node for commands, SFTP and port forwards).
asyncssh is imported here only, when a connection is made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.errors import ProviderError
from shared.nodes.errors import classify_connect_error
from shared.nodes.transport import HostKeyPolicy, NodeAccess

__all__ = ["open_connection"]


async def open_connection(access: NodeAccess, *, name: str) -> tuple[Any, Any]:
    """Connect to node ``name``: ``(connection, jump connection or None)``; both are the
    caller's to close. Raises a classified ProviderError when it cannot."""
    import asyncssh

    _require_known_hosts(access, name=name)

    tunnel: Any = None
    try:
        options = access.asyncssh_options()
        if access.jump is not None:
            # the jump host is reached with the node's own key, known_hosts and policy
            tunnel = await asyncssh.connect(access.jump.host, **access.asyncssh_options(jump=True))
            options["tunnel"] = tunnel
        conn = await asyncssh.connect(access.host, **options)
    except (OSError, asyncssh.Error) as exc:
        if tunnel is not None:
            tunnel.close()
        raise classify_connect_error(exc, name=name, known_hosts=access.pinned_in) from exc
    return conn, tunnel


def _require_known_hosts(access: NodeAccess, *, name: str) -> None:
    """A named known_hosts file that does not exist pins no key: refuse clearly (asyncssh
    would fail to read it, which reads as a retryable unreachable node)."""
    if access.known_hosts is None or access.host_keys is HostKeyPolicy.UNCHECKED:
        return
    if access.key_lines:  # checked against the announced keys: no file is read
        return
    if not Path(access.known_hosts).is_file():
        raise ProviderError(
            f"cannot reach node {name} over SSH ({access.where}): no host key is pinned for"
            f" it: {access.known_hosts} does not exist (the provisioner pins a host's key"
            " there on first contact; services on different machines need one shared"
            " AIDP_KNOWN_HOSTS_DIR)",
            code="host_key_mismatch",
        )
