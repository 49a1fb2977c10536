"""Checkpoint paths a training process announces: confined to the run's ``checkpoints/``.

The path in a ``checkpoint`` message comes from tenant code. The trainer stores what lies
there and then deletes it, so a path that leaves ``checkpoints/`` (absolute, ``..``, or a
symlink on the node) would make it store and delete any file it can reach. The message is
checked as text first (:func:`checkpoint_path_problem`); then, on the node, the resolved
folder must still lie under the run's ``checkpoints/`` (:func:`ensure_inside`; the local
executor never follows a symlink at all).
"""

from __future__ import annotations

import posixpath

from services.trainer.nodes.base import ISOLATED, NodeExecutor
from services.trainer.nodes.local import LocalExecutor
from shared.errors import ProviderError

__all__ = ["checkpoint_path_problem", "ensure_inside"]

#: Run by the node's python: argv[1] must resolve (symlinks followed) under argv[2].
_INSIDE = (
    "import os,sys\n"
    "p,r=os.path.realpath(sys.argv[1]),os.path.realpath(sys.argv[2])\n"
    "sys.exit(0 if p.startswith(r+os.sep) and not os.path.islink(sys.argv[1]) else 3)"
)


def checkpoint_path_problem(path: object) -> str | None:
    """Why ``path`` (relative to the workspace) is not an acceptable checkpoint folder."""
    if not isinstance(path, str) or not path or "\x00" in path:
        return "the path must be a non-empty string"
    if path.startswith("/") or "\\" in path:
        return f"{path!r} must be relative to the workspace (checkpoints/...)"
    parts = path.split("/")
    if ".." in parts or "." in parts or "" in parts:
        return f"{path!r} must not contain '..', '.' or empty parts"
    if parts[0] != "checkpoints" or len(parts) < 2:
        return f"{path!r} is not under checkpoints/"
    return None


async def ensure_inside(executor: NodeExecutor, path: str, base: str) -> None:
    """Raise ProviderError unless ``path`` resolves on the node to a folder under ``base``."""
    if posixpath.commonpath([path, base]) != base or path == base:
        raise ProviderError(f"{path} is not under {base}")
    if isinstance(executor, LocalExecutor):
        return  # every local file operation refuses symlinks on its own
    code, _, _ = await executor.run(
        [executor.python, *ISOLATED, "-c", _INSIDE, path, base], timeout=30
    )
    if code != 0:
        raise ProviderError(f"{path} resolves outside {base} (a symlink?)")
