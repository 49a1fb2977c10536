"""Lock resolution with source builds allowed: ``uv pip compile`` in the run sandbox.

With ``AIDP_ALLOW_SOURCE_BUILDS`` an sdist's PEP 517 hooks run while the lock is resolved
(dynamic metadata). They run here, never as the platform's user:

- **who**: the resolver uid, a lease for tenant ``env-resolver`` from the sandbox uid range
  (``AIDP_SANDBOX_UID_MIN``/``MAX``; never a run's uid nor the environment builder's),
  dropped with ``setpriv`` (no capabilities, no groups, ``no_new_privs``);
- **what it sees**: a fresh workspace (``requirements.in``, its ``HOME`` and a private uv
  cache; the only folder it can write besides a private ``/tmp``), system folders, uv, the
  interpreter's prefix, local find-links folders and the name resolution files read-only;
  own pid/ipc/uts namespaces, own ``/proc``, a minimal ``/dev``;
- **environment**: ``PATH``, ``HOME``, ``TMPDIR``, ``LANG``, ``UV_NO_CONFIG``,
  ``UV_CACHE_DIR`` (the workspace's), ``UV_PYTHON_DOWNLOADS=never`` and the controller's
  proxy/CA variables: no ``AIDP_*``, no Vault token, no cloud credentials;
- **network**: the host's (the index must be reached, a loopback one too), so a hook can
  reach what listens on loopback; allow builds only for trusted packages.

The lock is read back as root without following links (a hook could leave a symlink
there), then the workspace is removed. A host that cannot sandbox raises
:class:`~shared.sandbox.SandboxError`: there is no unsandboxed fallback.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import tempfile
from pathlib import Path

from services.provisioner.envs.lock import network_env
from services.provisioner.envs.sandboxed_build import _local_dirs, _network_files, find_python
from services.provisioner.settings import ProvisionerSettings
from shared.errors import ProviderError
from shared.sandbox import SandboxError, Sandboxes, SandboxSpec, sandbox_argv, sandbox_env
from shared.sandbox.sandboxes import environment_paths, hand_over

__all__ = ["RESOLVER_TENANT", "SandboxedCompile", "compile_in_sandbox"]

#: The uid lease every sandboxed lock resolution runs as.
RESOLVER_TENANT = "env-resolver"
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_MAX_LOCK_BYTES = 16 * 1024 * 1024


class SandboxedCompile:
    """One ``uv pip compile`` in a sandbox: ``returncode``, ``stderr`` and the lock text."""

    def __init__(self, returncode: int, stderr: str, text: str | None) -> None:
        self.returncode = returncode
        self.stderr = stderr
        self.text = text


def _read_lock(path: Path) -> str | None:
    """The lock file the sandbox wrote: a regular file only, never through a link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        data = handle.read(_MAX_LOCK_BYTES + 1)
    if len(data) > _MAX_LOCK_BYTES:
        raise ProviderError("the resolved lock is too large", code="lock_failed")
    return data.decode(errors="replace")


def _prepare(
    settings: ProvisionerSettings,
    argv: list[str],
    requirements: str,
    python_version: str,
    find_links: tuple[str, ...],
) -> tuple[Path, list[str], dict[str, str]]:
    """Workspace, command line and environment of the sandboxed compile (blocking)."""
    sandboxes = Sandboxes(settings.sandbox_policy())
    try:
        tools = sandboxes.tools()
    except SandboxError as exc:
        raise SandboxError(
            "AIDP_ALLOW_SOURCE_BUILDS resolves locks in the bubblewrap sandbox, which cannot"
            f" be set up here: {exc.message}"
        ) from exc
    uid = sandboxes.leases.lease(RESOLVER_TENANT)
    python = find_python(settings, python_version)
    root = settings.controller_dir() / "resolve"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    workspace = Path(tempfile.mkdtemp(dir=root, prefix="lock-"))
    (workspace / "requirements.in").write_text(requirements)
    (workspace / "home").mkdir()
    (workspace / "cache").mkdir()
    hand_over(str(workspace), uid)
    uv = settings.uv_binary
    uv_path = uv if os.path.isabs(uv) else (shutil.which(uv) or uv)
    network = network_env()
    spec = SandboxSpec(
        uid=uid,
        workspace=str(workspace),
        readonly=[
            uv_path,
            *environment_paths(python),
            *_local_dirs(find_links),
            *_network_files(network),
        ],
        hostname="aidp-lock",
        max_open_files=sandboxes.policy.max_open_files,
        max_processes=sandboxes.policy.max_processes,
        tools=tools,
        host_network=True,
    )
    env = {
        "PATH": _PATH,
        "HOME": str(workspace / "home"),
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "UV_NO_CONFIG": "1",
        "UV_NO_PROGRESS": "1",
        "UV_CACHE_DIR": str(workspace / "cache"),
        "UV_PYTHON_DOWNLOADS": "never",
        **network,
    }
    command = [uv_path, *argv[1:], "--python", python]
    return workspace, sandbox_argv(spec, command), sandbox_env(env)


async def compile_in_sandbox(
    settings: ProvisionerSettings,
    *,
    argv: list[str],
    requirements: str,
    python_version: str,
    find_links: tuple[str, ...],
) -> SandboxedCompile:
    """Run ``argv`` (``uv pip compile …`` reading ``requirements.in``, writing
    ``requirements.lock`` in its working directory) in the resolver's sandbox."""
    workspace, command, env = await asyncio.to_thread(
        _prepare, settings, argv, requirements, python_version, find_links
    )
    try:
        proc = await asyncio.create_subprocess_exec(
            *command,
            cwd="/",
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        code = proc.returncode or 0
        text = _read_lock(workspace / "requirements.lock") if code == 0 else None
        return SandboxedCompile(code, err.decode(errors="replace"), text)
    finally:
        await asyncio.to_thread(shutil.rmtree, workspace, True)
