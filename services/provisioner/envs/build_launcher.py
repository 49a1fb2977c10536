"""Runs the torch_env role's build script in the sandbox (local node; started as root).

``python -I build_launcher.py LAUNCH_FILE SCRIPT`` — the torch_env role starts it under
``flock`` in place of ``/bin/sh SCRIPT`` when the host var ``aidp_build_wrapper`` names it
(see :mod:`.sandboxed_build`, which writes ``LAUNCH_FILE``: the two sandboxed command lines
and their environment, 0600 in the run's private folder). It:

1. returns at once when the environment is already built (another builder got the lock
   first);
2. as root, resets what a failed earlier build left (``venv``, the marker), makes the
   env dir and the builder's package cache the builder uid's and copies the lock and the
   script in (from root's private folder: under the flock no builder process can see the
   env dir, so nothing races these writes);
3. runs ``SCRIPT install`` in the install sandbox (the host's network: uv must reach the
   package index; the cache read-write), then ``SCRIPT verify`` in the verify sandbox (no
   network, no cache: the env's python runs packages' code, e.g. ``.pth`` files, here);
4. checks that the venv still points at the interpreter it was built with (the trainer
   derives its read-only mounts from ``pyvenv.cfg`` and ``bin/python``); otherwise the
   marker goes and the build fails.

Standard library only: it runs as a file with ``python -I`` (no ``PYTHON*`` variables, no
working-directory imports), whatever the Python path of the platform.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys

__all__ = ["main"]


def _say(message: str) -> None:
    print(f"aidp: {message}", file=sys.stderr, flush=True)


def _built(env_dir: str, lock_hash: str) -> bool:
    path = os.path.join(env_dir, ".aidp-ready")
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        with open(path) as handle:
            return lock_hash in handle.read()
    except OSError:
        return False


def _remove(path: str) -> None:
    """Remove ``path`` whatever it is; never follows a symlink."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _hand_over(path: str, uid: int, mode: int) -> None:
    """Make the folder ``path`` itself ``uid``'s with ``mode`` (a symlink is refused)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fchown(fd, uid, uid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _copy_in(source: str, dest: str) -> None:
    """Copy root's ``source`` to ``dest`` (a new file, 0644: readable by the builder)."""
    with open(source, "rb") as handle:
        data = handle.read()
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    os.fchmod(fd, 0o644)  # whatever the umask the launcher inherited
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _fresh_cache(path: str, uid: int) -> None:
    """The builder's package cache: kept when it is ``uid``'s folder, else made anew."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    if info is not None and (not stat.S_ISDIR(info.st_mode) or info.st_uid != uid):
        _remove(path)  # a symlink, a file, or the cache of another (earlier) builder uid
        info = None
    if info is None:
        os.mkdir(path, 0o700)
    _hand_over(path, uid, 0o700)


def _within(path: str, prefixes: list[str]) -> bool:
    real = os.path.realpath(path)
    return any(real == p or real.startswith(p.rstrip("/") + "/") for p in prefixes)


def _venv_problem(env_dir: str, prefixes: list[str]) -> str | None:
    """Why the built venv cannot be trusted to point at the interpreter, or None."""
    venv = os.path.join(env_dir, "venv")
    cfg = os.path.join(venv, "pyvenv.cfg")
    try:
        if not stat.S_ISREG(os.lstat(cfg).st_mode):
            return "venv/pyvenv.cfg is not a regular file"
        with open(cfg) as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        return f"venv/pyvenv.cfg cannot be read ({exc})"
    homes = [v.strip() for k, _, v in (ln.partition("=") for ln in lines) if k.strip() == "home"]
    if len(homes) != 1 or not _within(homes[0], prefixes):
        return f"venv/pyvenv.cfg names the home {homes!r}, not the interpreter's"
    if not _within(os.path.join(venv, "bin", "python"), prefixes):
        return "venv/bin/python does not lead to the interpreter the env was built with"
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        _say("usage: build_launcher.py LAUNCH_FILE SCRIPT")
        return 2
    with open(argv[1]) as handle:
        launch = json.load(handle)
    if argv[2] != launch["script"]:
        _say(f"{argv[2]} is not the build script this launch file is for")
        return 2
    env_dir, uid = launch["env_dir"], int(launch["uid"])
    if _built(env_dir, launch["lock_hash"]):
        print("aidp: environment already built", flush=True)
        return 0
    for name in ("venv", ".aidp-ready", ".aidp-ready.tmp", *launch["inputs"]):
        _remove(os.path.join(env_dir, name))
    _hand_over(env_dir, uid, 0o755)
    for name, source in launch["inputs"].items():
        _copy_in(source, os.path.join(env_dir, name))
    _fresh_cache(launch["cache_dir"], uid)
    os.umask(0o022)
    for phase in ("install", "verify"):
        code = subprocess.run(launch[phase], env=launch["env"], check=False).returncode
        if code != 0:
            _say(f"the sandboxed build's {phase} step ended with exit status {code}")
            return code if code > 0 else 1
    problem = _venv_problem(env_dir, launch["python_prefixes"])
    if problem:
        _remove(os.path.join(env_dir, ".aidp-ready"))
        _say(f"refusing the built environment: {problem}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
