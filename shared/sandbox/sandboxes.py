"""Everything a sandboxed process needs on the host, prepared once per start.

:class:`Sandboxes` turns "run this for tenant T in workspace W with python P" into a
:class:`SandboxSpec`: T's uid (leased), W handed over to that uid (without following a
single symlink), P's environment and interpreter found and bound read-only, T's network
namespace and a memory cgroup made when asked.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path

from shared.sandbox.cgroups import memory_cgroup
from shared.sandbox.command import HOSTNAME, SYSTEM_DIRS, SandboxSpec
from shared.sandbox.errors import SandboxError
from shared.sandbox.netns import ensure_netns
from shared.sandbox.policy import SandboxPolicy, check_host
from shared.sandbox.uids import UidLeases

__all__ = ["Sandboxes", "environment_paths", "hand_over"]

RUN_USER = "aidp-run"


def environment_paths(python: str) -> list[str]:
    """The folders ``python`` needs read-only: its venv and the interpreter it points at."""
    found: list[str] = []
    exe = Path(python)
    venv = exe.parent.parent
    if (venv / "pyvenv.cfg").is_file():
        found.append(str(venv))
        for line in (venv / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                found.append(str(Path(value.strip()).parent))
    real = Path(os.path.realpath(exe))
    found.append(str(real.parent.parent))
    keep: list[str] = []
    for path in dict.fromkeys(found):
        if any(path == d or path.startswith(d + "/") for d in SYSTEM_DIRS) or path == "/":
            continue
        if not os.path.isdir(path):
            continue
        keep.append(path)
    return keep


def hand_over(workspace: str, uid: int) -> None:
    """Make ``uid`` own the workspace and everything in it; symlinks are not followed
    (their own owner changes, never their target's)."""
    top = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.chown(top, uid, uid)
        os.chmod(top, 0o700)
        for _, dirs, files, dirfd in os.fwalk(dir_fd=top, follow_symlinks=False):
            for name in dirs + files:
                os.chown(name, uid, uid, dir_fd=dirfd, follow_symlinks=False)
                info = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    os.chmod(name, 0o700, dir_fd=dirfd)
                elif stat.S_ISREG(info.st_mode):
                    os.chmod(name, (info.st_mode & 0o700) | 0o600, dir_fd=dirfd)
    finally:
        os.close(top)


def _hostname(name: str) -> str:
    """``name`` as a valid host name (RFC 1123 label)."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63]
    return label or HOSTNAME


class Sandboxes:
    """Prepares sandboxes under one :class:`SandboxPolicy` (blocking calls: use a thread)."""

    def __init__(self, policy: SandboxPolicy) -> None:
        self.policy = policy
        self.leases = UidLeases(policy)
        self._tools: dict[str, str] | None = None

    def tools(self) -> dict[str, str]:
        if self._tools is None:
            self._tools = check_host(self.policy)
        return self._tools

    def _passwd(self, uid: int, home: str, hostname: str, peers: Sequence[str]) -> str:
        folder = self.policy.state_dir / "etc" / f"{uid}-{hostname}"
        names = " ".join(dict.fromkeys([hostname, "localhost", *peers]))
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o755)
        for name, text in (
            ("passwd", f"root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
                       f"{RUN_USER}:x:{uid}:{uid}:aidp run:{home}:/bin/sh\n"),
            ("group", f"root:x:0:\n{RUN_USER}:x:{uid}:\n"),
            ("hosts", f"127.0.0.1 {names}\n::1 localhost ip6-localhost\n"),
            # files only: a name missing from hosts must fail at once (EAI_NONAME), not wait
            # for a DNS server the sandbox cannot reach (EAI_AGAIN makes torch retry forever)
            ("nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n"),
        ):  # fmt: skip
            path = folder / name
            path.write_text(text)
            os.chmod(path, 0o644)
        return str(folder)

    def prepare(
        self,
        *,
        tenant: str,
        workspace: str,
        python: str,
        protected: Sequence[str] = (),
        shared_network: bool = False,
        gpu: bool = False,
        cgroup_name: str | None = None,
        hostname: str = HOSTNAME,
        peers: Sequence[str] = (),
    ) -> SandboxSpec:
        """The spec for one process of ``tenant`` in ``workspace`` (which must exist).

        ``hostname`` must differ between the nodes of one run (torchrun names a node by
        host name and pid, and every sandbox's first process has the same pid); ``peers``
        are the other nodes' host names, all on the shared loopback."""
        tools = self.tools()
        if not os.path.isdir(workspace) or os.path.islink(workspace):
            raise SandboxError(f"the sandbox workspace {workspace} is missing")
        uid = self.leases.lease(tenant)
        home = os.path.join(workspace, "home")
        os.makedirs(home, exist_ok=True)
        hand_over(workspace, uid)
        hostname = _hostname(hostname)
        cgroup = None
        if self.policy.memory_mb and cgroup_name:
            cgroup = memory_cgroup(f"aidp-{cgroup_name}", self.policy.memory_mb)
        return SandboxSpec(
            uid=uid,
            workspace=workspace,
            readonly=environment_paths(python),
            protected=[p for p in protected if os.path.isdir(p) and not os.path.islink(p)],
            passwd_dir=self._passwd(uid, home, hostname, [_hostname(p) for p in peers]),
            hostname=hostname,
            netns=ensure_netns(tenant) if shared_network else None,
            cgroup=cgroup,
            gpu=gpu,
            max_open_files=self.policy.max_open_files,
            max_processes=self.policy.max_processes,
            tools=tools,
        )
