"""The platform's own files: nobody but the platform's user reads them.

Called first thing by every entry point (``aidp up``, ``aidp serve``, ``python -m
services.<name>``): the umask becomes 077, so every file the platform creates from then on
is private, and the data dir, the encrypted store, the environment cache, the run
workspaces' parent, the sandbox state and the SQLite databases that already exist are
tightened to 0700 (folders) and 0600 (files). Runs never see any of it: their sandboxes
bind only their own workspace and environment (see ``shared/sandbox``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["PRIVATE_DIRS", "harden_process"]

#: Folders under the data dir that hold plaintext, ciphertext or credentials.
PRIVATE_DIRS = ("store", "envs", "workspaces", "trainer-serving", "sandbox", "openbao", "uploads")


def harden_process(data_dir: Path | str | None) -> None:
    """Set umask 077 and make ``data_dir`` and its private parts owner-only."""
    os.umask(0o077)
    if data_dir is None:
        return
    root = Path(data_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    _chmod(root, 0o700)
    for name in PRIVATE_DIRS:
        _chmod(root / name, 0o700)
    for database in root.glob("*.db*"):  # SQLite files and their -wal/-shm companions
        _chmod(database, 0o600)


def _chmod(path: Path, mode: int) -> None:
    with contextlib.suppress(FileNotFoundError, PermissionError):
        if not path.is_symlink():
            path.chmod(mode)
