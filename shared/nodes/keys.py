"""Private key files for node access: written 0600 from the start, in a 0700 folder."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_key"]


def write_key(path: Path, private_key: str) -> Path:
    """Write a private key 0600 (created with that mode: never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = private_key if private_key.endswith("\n") else private_key + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)
    return path
