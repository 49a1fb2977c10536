"""Local environment builds in the bubblewrap sandbox (:mod:`shared.sandbox`).

On the local node the torch_env role's build script installs packages a spec chose, on the
platform's own machine. It never runs as the platform's user (root) or with its
environment. Before Ansible runs, :meth:`BuildSandbox.host_vars`:

- checks the host (root, bwrap, setpriv, prlimit): a sandbox that cannot be set up raises
  :class:`~shared.sandbox.SandboxError` naming the cause and the fix; there is no
  unsandboxed fallback;
- leases the builder uid (tenant ``env-builder``) from the sandbox uid range the trainer's
  runs use too (``AIDP_SANDBOX_*``, one lease directory: never a run's uid);
- finds the interpreter on the controller (``uv python find --no-project --system``),
  passed to ``uv venv --python`` so only that prefix is mounted;
- writes a launch file (0600, the run's private folder) with two sandboxed command lines
  and their environment, and returns the host vars ``aidp_build_wrapper`` (the launcher,
  :mod:`.build_launcher`, which the role starts under ``flock`` instead of ``/bin/sh``),
  ``aidp_build_inputs`` (where the role writes the script instead of the env dir: root
  never writes into the builder's env dir outside the flock), ``aidp_python_path`` and
  ``aidp_uv_cache_dir``.

The two sandboxes, both as the builder uid, no capabilities, own pid/ipc/uts namespaces,
system folders read-only, private ``/tmp``, own ``/proc``, minimal ``/dev``, and only
``PATH``, ``HOME=/tmp``, ``TMPDIR``, ``LANG``, ``UV_NO_CONFIG``, ``UV_LINK_MODE=copy`` and
the controller's proxy/CA variables in the environment (no ``AIDP_*``, Vault token or
cloud credentials):

- **install** (``build_env.sh install``: ``uv venv`` + ``uv pip sync``): the host's network
  (the package index must be reached), the env dir and the builder's package cache
  (``<env root>/.build-cache``) read-write; uv, the interpreter's prefix, the find-links
  folders and the host's name resolution files (``/etc/resolv.conf``, ``hosts``,
  ``nsswitch.conf``) read-only. With ``--no-build`` no package code runs here; with
  ``AIDP_ALLOW_SOURCE_BUILDS`` build hooks do, and they can reach what the host's loopback
  serves.
- **verify** (``build_env.sh verify``: the env's python imports torch and the serving
  modules and writes the marker): no network, no package cache; only the env dir
  read-write. Importing packages runs their code (``.pth`` files, plugins): it happens
  where it can neither reach a service nor poison the cache later builds use.

Files are copied out of the cache (``UV_LINK_MODE=copy``), never hard-linked: a later
build, which holds the cache read-write, cannot reach an earlier env's files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from services.provisioner.drivers.base import Node
from services.provisioner.envs.lock import network_env
from services.provisioner.settings import ProvisionerSettings
from shared.errors import ProviderError
from shared.sandbox import SandboxError, Sandboxes, SandboxSpec, sandbox_argv, sandbox_env
from shared.sandbox.command import SYSTEM_DIRS
from shared.sandbox.sandboxes import environment_paths

__all__ = ["BUILDER_TENANT", "LAUNCHER", "BuildSandbox", "find_python"]

#: The uid lease every local environment build runs as.
BUILDER_TENANT = "env-builder"
#: Started by the torch_env role (as root, under flock) in place of ``/bin/sh``.
LAUNCHER = Path(__file__).resolve().with_name("build_launcher.py")
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Host files a build on the host's network needs to find the index (read-only).
_NETWORK_FILES = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf")
#: Already visible in every sandbox (system folders and /etc/ssl).
_VISIBLE = (*SYSTEM_DIRS, "/etc/ssl", "/etc/ca-certificates")


def _under(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def find_python(settings: ProvisionerSettings, version: str, node: Node | None = None) -> str:
    """The interpreter ``uv venv`` gets on the local node, or a sandboxed lock resolution
    builds with (``node`` None: the controller); installed first when
    ``AIDP_PYTHON_DOWNLOADS=automatic``. Never a virtual environment's."""
    env = {
        "PATH": os.environ.get("PATH") or os.defpath,
        "HOME": os.environ.get("HOME") or "/root",  # uv-managed interpreters live under it
        "UV_NO_CONFIG": "1",
        "UV_NO_PROGRESS": "1",
    }
    uv = settings.uv_binary
    if settings.python_downloads == "automatic":
        subprocess.run(
            [uv, "python", "install", version],
            env={**env, **network_env()},
            cwd="/",
            capture_output=True,
            timeout=1800,
            check=False,
        )
    found = subprocess.run(
        [uv, "python", "find", "--no-project", "--system", version],
        env={**env, "UV_PYTHON_DOWNLOADS": "never"},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    path = found.stdout.strip().splitlines()[-1] if found.stdout.strip() else ""
    if found.returncode != 0 or not os.path.isabs(path):
        raise ProviderError(
            f"Python {version} cannot be found on {node.name if node else 'the controller'}"
            f" (install python{version} or allow downloads with"
            " AIDP_PYTHON_DOWNLOADS=automatic). uv said: " + found.stderr.strip(),
            code="configure_failed",
        )
    return path


def _python_prefixes(python: str) -> list[str]:
    """Where the venv's ``home`` and ``bin/python`` may lead (checked after the build)."""
    real = os.path.realpath(python)
    prefixes = [str(Path(python).parent.parent), str(Path(real).parent.parent)]
    return [p for p in dict.fromkeys(prefixes) if p != "/"]


def _local_dirs(links: Sequence[str]) -> list[str]:
    """The find-links entries that are folders of this machine."""
    paths = (link.removeprefix("file://") for link in links)
    return [p for p in paths if os.path.isabs(p) and os.path.isdir(p)]


def _network_files(network: dict[str, str]) -> list[str]:
    """resolv.conf/hosts and the CA files the proxy/CA variables name, when not visible."""
    found = [p for p in _NETWORK_FILES if os.path.exists(p)]
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        value = network.get(name, "")
        if os.path.isabs(value) and os.path.exists(value) and not _under(value, _VISIBLE):
            found.append(value)
    return found


class BuildSandbox:
    """Prepares the local node's sandboxed environment builds (blocking: use a thread)."""

    def __init__(self, settings: ProvisionerSettings) -> None:
        self.settings = settings
        self._sandboxes: Sandboxes | None = None

    def _checked(self) -> tuple[Sandboxes, dict[str, str]]:
        if self._sandboxes is None:
            self._sandboxes = Sandboxes(self.settings.sandbox_policy())
        try:
            return self._sandboxes, self._sandboxes.tools()
        except SandboxError as exc:
            raise SandboxError(
                "the local node builds environments in the bubblewrap sandbox, which cannot"
                f" be set up here: {exc.message}"
            ) from exc

    def host_vars(
        self,
        node: Node,
        *,
        lock_hash: str,
        python_version: str,
        find_links: Sequence[str],
        private_dir: Path,
    ) -> dict[str, Any]:
        """Host vars that make the torch_env role build ``lock_hash`` on ``node`` sandboxed."""
        sandboxes, tools = self._checked()
        uid = sandboxes.leases.lease(BUILDER_TENANT)
        python = find_python(self.settings, python_version, node)
        env_dir = f"{node.env_root}/{lock_hash}"
        cache_dir = f"{node.env_root}/.build-cache"
        script = f"{env_dir}/build_env.sh"
        network = network_env()
        policy = sandboxes.policy
        verify = SandboxSpec(
            uid=uid,
            workspace=env_dir,
            readonly=environment_paths(python),
            hostname="aidp-env-build",
            max_open_files=policy.max_open_files,
            max_processes=policy.max_processes,
            tools=tools,
        )
        install = replace(
            verify,
            readonly=[
                node.tools_dir,
                *verify.readonly,
                *_local_dirs(find_links),
                *_network_files(network),
            ],
            writable=[cache_dir],
            host_network=True,
        )
        env = {
            "PATH": _PATH,
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
            "LANG": "C.UTF-8",
            "UV_NO_CONFIG": "1",
            "UV_LINK_MODE": "copy",
            **network,
        }
        launch = {
            "script": script,
            "inputs": {  # root's, in the run's private folder: copied in under the flock
                "requirements.lock": str(private_dir / "requirements.lock"),
                "build_env.sh": str(private_dir / "build_env.sh"),
            },
            "env_dir": env_dir,
            "cache_dir": cache_dir,
            "lock_hash": lock_hash,
            "uid": uid,
            "python_prefixes": _python_prefixes(python),
            "install": sandbox_argv(install, ["/bin/sh", script, "install"]),
            "verify": sandbox_argv(verify, ["/bin/sh", script, "verify"]),
            "env": sandbox_env(env),
        }
        private_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = private_dir / f"build-{node.name}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(launch, handle)
        return {
            "aidp_build_wrapper": [sys.executable, "-I", str(LAUNCHER), str(path)],
            "aidp_build_inputs": str(private_dir),
            "aidp_python_path": python,
            "aidp_uv_cache_dir": cache_dir,
        }
