"""File operations on a tree a tenant can write to, that never follow a symlink.

The platform reads checkpoints and models out of run workspaces and writes staged files
into them, as its own (privileged) user. A tenant who swaps a folder for a symlink to
``/`` must not make it read ``init.json`` or write ``/etc``. Every operation here walks the
path one component at a time from an already-open ``root`` with ``O_NOFOLLOW``, so a
symlink anywhere below ``root`` — planted before or during the call — makes it fail with
:class:`ConfinementError` instead of leaving the tree. Paths outside ``root`` are refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "ConfinementError",
    "PendingWrite",
    "confined_dir_fd",
    "confined_exists",
    "confined_files",
    "confined_link",
    "confined_open",
    "confined_remove",
    "relative_to_root",
]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class ConfinementError(OSError):
    """A path left its root (``..``, absolute elsewhere, or a symlink on the way)."""


def relative_to_root(root: str, path: str) -> list[str]:
    """``path``'s components below ``root``; refuses anything that is not under it."""
    root_n = os.path.normpath(root)
    path_n = os.path.normpath(path if os.path.isabs(path) else os.path.join(root_n, path))
    if path_n != path_n.rstrip("/") or "\x00" in path_n:
        raise ConfinementError(f"invalid path {path!r}")
    if path_n == root_n:
        return []
    if not path_n.startswith(root_n.rstrip("/") + "/"):
        raise ConfinementError(f"{path} is outside {root}")
    return path_n[len(root_n.rstrip("/")) + 1 :].split("/")


@contextmanager
def _parent_fd(root: str, parts: list[str], *, create: bool) -> Iterator[int]:
    """An fd of the folder holding the last component (folders made when ``create``)."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
            try:
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise ConfinementError(f"{part} is a symlink or not a folder") from exc
                raise
            os.close(fd)
            fd = nxt
        yield fd
    finally:
        os.close(fd)


def confined_open(root: str, path: str) -> int:
    """A read-only fd of the regular file ``path`` under ``root``."""
    parts = relative_to_root(root, path)
    if not parts:
        raise ConfinementError(f"{path} is the root folder, not a file")
    with _parent_fd(root, parts, create=False) as parent:
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ConfinementError(f"{path} is a symlink") from exc
            raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfinementError(f"{path} is not a regular file")
    return fd


def confined_exists(root: str, path: str) -> bool:
    """Is there a file or folder (not a symlink) at ``path``?"""
    try:
        parts = relative_to_root(root, path)
        if not parts:
            return os.path.isdir(root)
        with _parent_fd(root, parts, create=False) as parent:
            info = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError, ConfinementError):
        return False
    return not stat.S_ISLNK(info.st_mode)


def confined_remove(root: str, path: str) -> None:
    """``rm -rf path``: a symlink is removed itself, never followed; no error if missing."""
    try:
        parts = relative_to_root(root, path)
    except ConfinementError:
        raise
    if not parts:
        shutil.rmtree(root, ignore_errors=True)
        return
    try:
        with _parent_fd(root, parts, create=False) as parent:
            info = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                shutil.rmtree(parts[-1], dir_fd=parent)
            else:
                os.unlink(parts[-1], dir_fd=parent)
    except (FileNotFoundError, NotADirectoryError):
        return


def confined_files(root: str, path: str) -> list[str]:
    """Regular files under ``path`` as relative POSIX paths; symlinks inside are skipped,
    never followed (empty when ``path`` is missing; ConfinementError when it, or a folder on
    the way to it, is a symlink)."""
    try:
        parts = relative_to_root(root, path)
    except ConfinementError:
        raise
    try:
        with contextlib.ExitStack() as stack:
            if parts:
                parent = stack.enter_context(_parent_fd(root, parts, create=False))
                top = os.open(parts[-1], _DIR_FLAGS, dir_fd=parent)
            else:
                top = os.open(root, _DIR_FLAGS)
            stack.callback(os.close, top)
            found: list[str] = []
            for folder, _, files, dirfd in os.fwalk(dir_fd=top, follow_symlinks=False):
                for name in files:
                    info = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                    if stat.S_ISREG(info.st_mode):
                        rel = os.path.normpath(os.path.join(folder, name))
                        found.append(rel)
            return sorted(found)
    except FileNotFoundError:
        return []
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise ConfinementError(f"{path} is a symlink or not a folder") from exc
        raise


class PendingWrite:
    """A file being written under a root: :meth:`write` chunks, then :meth:`commit`
    renames it into place (or :meth:`abort` removes it)."""

    def __init__(self, root: str, path: str, *, mode: int = 0o644) -> None:
        parts = relative_to_root(root, path)
        if not parts:
            raise ConfinementError("cannot write the root folder")
        self._stack = contextlib.ExitStack()
        self._parent = self._stack.enter_context(_parent_fd(root, parts, create=True))
        self._name = parts[-1]
        self._tmp = f".{parts[-1]}.{os.getpid()}.{id(self):x}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self._fh = os.fdopen(os.open(self._tmp, flags, mode, dir_fd=self._parent), "wb")

    def write(self, chunk: bytes) -> None:
        self._fh.write(chunk)

    def commit(self) -> None:
        self._fh.close()
        try:
            os.rename(self._tmp, self._name, src_dir_fd=self._parent, dst_dir_fd=self._parent)
        finally:
            self._stack.close()

    def abort(self) -> None:
        self._fh.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp, dir_fd=self._parent)
        self._stack.close()


def confined_link(root: str, source: str, dest: str) -> None:
    """Hard-link (or copy) ``source`` to ``dest``, both under ``root``; ``dest``'s folders
    are made and an existing ``dest`` replaced. Neither side follows a symlink."""
    src_parts = relative_to_root(root, source)
    dst_parts = relative_to_root(root, dest)
    if not src_parts or not dst_parts:
        raise ConfinementError("cannot link the root folder")
    with (
        _parent_fd(root, src_parts, create=False) as src_dir,
        _parent_fd(root, dst_parts, create=True) as dst_dir,
    ):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dst_parts[-1], dir_fd=dst_dir)
        try:
            os.link(
                src_parts[-1], dst_parts[-1], src_dir_fd=src_dir, dst_dir_fd=dst_dir,
                follow_symlinks=False,
            )  # fmt: skip
            return
        except OSError:
            pass
    fd = confined_open(root, source)
    with os.fdopen(fd, "rb") as fh:
        pending = PendingWrite(root, dest)
        try:
            while chunk := fh.read(1 << 20):
                pending.write(chunk)
        except BaseException:
            pending.abort()
            raise
        pending.commit()


def confined_dir_fd(root: str, path: str) -> int:
    """An fd of the folder ``path`` under ``root`` (reached without following symlinks)."""
    parts = relative_to_root(root, path)
    if not parts:
        return os.open(root, _DIR_FLAGS)
    with _parent_fd(root, parts, create=False) as parent:
        try:
            return os.open(parts[-1], _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise ConfinementError(f"{path} is a symlink or not a folder") from exc
            raise
