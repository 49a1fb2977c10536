"""Where node host keys are pinned: one rule for the provisioner (which records a key on
first contact) and the trainer (which only checks it), so both read the same file.

A user's own hosts (provider ``ssh``) are pinned per user, in ``<known_hosts dir>/<user
id>`` (``platform`` for a run without an owner); the folder is ``AIDP_KNOWN_HOSTS_DIR``,
by default ``<data_dir>/known_hosts``. Services on different machines must point the
setting at one shared folder (or the same data dir)."""

from __future__ import annotations

import uuid
from pathlib import Path

from shared.errors import ProviderError

__all__ = ["NO_OWNER", "known_hosts_dir", "user_known_hosts"]

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
