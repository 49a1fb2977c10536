"""Where node host keys are pinned: one rule for the provisioner (which records a key on
first contact) and the trainer (which only checks it), so both read the same file.

A user's own hosts (provider ``ssh``) are pinned per user, in ``<known_hosts dir>/<user
id>`` (``platform`` for a run without an owner); the folder is ``AIDP_KNOWN_HOSTS_DIR``,
by default ``<data_dir>/known_hosts``. Services on different machines must point the
setting at one shared folder (or the same data dir).

What the provisioner pinned also travels with the node: :func:`pinned_host_keys` reads a
host's keys out of a known_hosts file as OpenSSH public-key lines, which the provisioner
announces in the node's ``NodeInfo.host_keys`` (``NodesReady``/``NodesReplaced``); the
trainer checks the node against exactly those, wherever it runs."""

from __future__ import annotations

import ipaddress
import uuid
from pathlib import Path

from shared.errors import ProviderError

__all__ = ["NO_OWNER", "known_hosts_dir", "pinned_host_keys", "user_known_hosts"]

#: the file name of the hosts of runs without an owner (older producers named none)
NO_OWNER = "platform"


def known_hosts_dir(data_dir: Path, configured: Path | None = None) -> Path:
    """The folder of per-user known_hosts files: ``configured`` (``AIDP_KNOWN_HOSTS_DIR``)
    or ``data_dir/known_hosts``. Nothing is created."""
    return configured if configured is not None else data_dir / "known_hosts"


def user_known_hosts(directory: Path, owner_id: uuid.UUID | str | None) -> Path:
    """The known_hosts file pinning the host keys of ``owner_id``'s own hosts, in
    ``directory`` (see :func:`known_hosts_dir`). Nothing is created.

    The owner becomes a file name, so only a user id (a UUID) is accepted: anything else
    is a ProviderError, never a path outside ``directory``."""
    if owner_id is None or owner_id == "":
        return directory / NO_OWNER
    try:
        owner = owner_id if isinstance(owner_id, uuid.UUID) else uuid.UUID(str(owner_id))
    except ValueError:
        raise ProviderError(
            f"run owner {str(owner_id)[:80]!r} is not a user id: no known_hosts file for it",
            code="invalid_node_value",
        ) from None
    return directory / str(owner)


def pinned_host_keys(known_hosts: Path | str | None, host: str, port: int = 22) -> tuple[str, ...]:
    """The host keys pinned for ``host:port`` in the known_hosts file ``known_hosts``, as
    OpenSSH public-key lines (``<type> <base64>``, no comment), in the file's order. Plain
    and hashed host patterns are matched as ssh matches them; CA and revoked entries are no
    pinned key. () when there is no file or nothing is pinned for the host."""
    if known_hosts is None or not Path(known_hosts).is_file():
        return ()
    import asyncssh  # the provisioner only reads the file: no connection is made

    try:
        addr = str(ipaddress.ip_address(host))
    except ValueError:
        addr = ""
    pinned = asyncssh.import_known_hosts(Path(known_hosts).read_text())
    keys = pinned.match(host, addr, None if port == 22 else port)[0]
    lines = (key.export_public_key("openssh").decode().split()[:2] for key in keys)
    return tuple(dict.fromkeys(" ".join(line) for line in lines))
