"""The command line that starts a process inside a sandbox.

``nsenter`` (the run's shared network namespace, when it has one) → ``prlimit`` (open
files, processes, no core dumps) → ``bwrap`` (namespaces and mounts, as root, without a user
namespace) → ``setpriv`` (drop to the run's uid, no capabilities, no groups) → the program.
A shell in front joins the memory cgroup first when there is one. bubblewrap's own
``--die-with-parent`` and pid namespace make sure nothing of the run outlives it.
"""

from __future__ import annotations

import os
import resource
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

__all__ = ["HOSTNAME", "SYSTEM_DIRS", "SandboxSpec", "sandbox_argv", "sandbox_env"]

#: The sandbox's default host name; its /etc/hosts maps it to loopback (torchrun's
#: rendezvous publishes it to the other ranks, so each node of a run needs its own).
HOSTNAME = "aidp-run"
#: Host directories every sandbox sees read-only (a symlink stays a symlink).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: Files of /etc a program needs (dynamic loader, TLS roots, time zone); never passwd/shadow.
ETC_FILES = (
    "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives",
    "/etc/ssl", "/etc/ca-certificates", "/etc/localtime",
    "/etc/host.conf", "/etc/mime.types",
)  # fmt: skip
#: Device nodes an accelerator needs, bound when present.
GPU_DEVICES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/dri")


@dataclass(frozen=True)
class SandboxSpec:
    """One sandboxed process: who it runs as and what it sees."""

    uid: int
    workspace: str  #: bound read-write at the same path; the working directory
    readonly: Sequence[str] = ()  #: environment, interpreter: bound read-only, same path
    protected: Sequence[str] = ()  #: folders of the workspace bound read-only on top
    passwd_dir: str | None = None  #: holds the generated passwd, group and hosts files
    hostname: str = HOSTNAME
    netns: str | None = None  #: a named namespace to join; None: a fresh empty one
    cgroup: Path | None = None  #: memory cgroup to join
    gpu: bool = False
    max_open_files: int = 65_536
    max_processes: int = 4_096
    tools: Mapping[str, str] = field(default_factory=dict)  #: bwrap/setpriv/prlimit paths
    #: more folders bound read-write at the same path (an environment build's package cache)
    writable: Sequence[str] = ()
    #: keep the host's network (no network namespace of its own): only for the
    #: provisioner's environment builds, which must reach the package index
    host_network: bool = False


def _parents(path: str) -> list[str]:
    parts = PurePosixPath(path).parents
    return [str(p) for p in reversed(list(parts)) if str(p) != "/"]


def _dirs_for(path: str, made: set[str]) -> list[str]:
    """``--dir`` arguments making ``path``'s parents traversable (bwrap makes them 0700)."""
    args: list[str] = []
    for parent in _parents(path):
        if parent not in made:
            made.add(parent)
            args += ["--perms", "0755", "--dir", parent]
    return args


def _system_mounts() -> list[str]:
    args: list[str] = ["--perms", "0755", "--dir", "/etc"]
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in ETC_FILES:
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    return args


_LOADER_PREFIXES = ("LD_", "GCONV_PATH", "GLIBC_TUNABLES", "MALLOC_", "NLSPATH", "LOCPATH")


def _within_hard_limit(which: int, wanted: int) -> int:
    """``wanted``, lowered to the platform's own hard limit (a container may forbid raising
    it, even to root)."""
    hard = resource.getrlimit(which)[1]
    return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)


def sandbox_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment to start :func:`sandbox_argv`'s command with: exactly ``env``, less
    the variables that would steer the privileged tools in front (the dynamic loader's).

    The environment travels as the process environment, never as ``--setenv`` arguments:
    a command line is readable by every local user for as long as the run lives."""
    return {k: v for k, v in env.items() if not k.startswith(_LOADER_PREFIXES)}


def sandbox_argv(spec: SandboxSpec, argv: Sequence[str]) -> list[str]:
    """The full command line running ``argv`` in ``spec``'s sandbox; start it with the
    environment :func:`sandbox_env` gives."""
    tool = {
        "bwrap": "bwrap", "setpriv": "setpriv", "prlimit": "prlimit", "nsenter": "nsenter",
        **spec.tools,
    }  # fmt: skip
    made: set[str] = set()
    bwrap = [
        tool["bwrap"], "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        "--unshare-cgroup-try", "--die-with-parent", "--new-session",
        "--hostname", spec.hostname,
    ]  # fmt: skip
    if spec.netns is None and not spec.host_network:
        bwrap.append("--unshare-net")
    bwrap += _system_mounts()
    if spec.passwd_dir:
        bwrap += [
            "--ro-bind", f"{spec.passwd_dir}/passwd", "/etc/passwd",
            "--ro-bind", f"{spec.passwd_dir}/group", "/etc/group",
            "--ro-bind", f"{spec.passwd_dir}/hosts", "/etc/hosts",
            "--ro-bind", f"{spec.passwd_dir}/nsswitch.conf", "/etc/nsswitch.conf",
        ]  # fmt: skip
    # sticky and world-writable like the host's (bwrap makes a tmpfs 0755 root's otherwise,
    # which the dropped uid cannot write)
    bwrap += [
        "--proc", "/proc", "--dev", "/dev",
        "--perms", "1777", "--tmpfs", "/dev/shm", "--perms", "1777", "--tmpfs", "/tmp",
    ]  # fmt: skip
    if spec.gpu:
        for dev in GPU_DEVICES + tuple(f"/dev/nvidia{i}" for i in range(16)):
            if os.path.exists(dev):
                bwrap += ["--dev-bind", dev, dev]
        if os.path.isdir("/sys"):
            bwrap += ["--ro-bind", "/sys", "/sys"]
    for path in spec.readonly:
        bwrap += [*_dirs_for(path, made), "--ro-bind", path, path]
    made.add("/tmp")  # the private tmpfs above
    bwrap += [*_dirs_for(spec.workspace, made), "--bind", spec.workspace, spec.workspace]
    for path in spec.writable:
        bwrap += [*_dirs_for(path, made), "--bind", path, path]
    for path in spec.protected:
        bwrap += ["--ro-bind", path, path]
    bwrap += ["--chdir", spec.workspace, "--"]
    uid = str(spec.uid)
    drop = [
        tool["setpriv"], f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
        "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
    ]  # fmt: skip
    nofile = _within_hard_limit(resource.RLIMIT_NOFILE, spec.max_open_files)
    nproc = _within_hard_limit(resource.RLIMIT_NPROC, spec.max_processes)
    limits = [
        tool["prlimit"], f"--nofile={nofile}:{nofile}", f"--nproc={nproc}:{nproc}",
        "--core=0:0", "--",
    ]  # fmt: skip
    # the limits are set outside bwrap: it drops CAP_SYS_RESOURCE before its child runs
    command = [*limits, *bwrap, *drop, *argv]
    if spec.netns is not None:
        command = [tool["nsenter"], f"--net={spec.netns}", "--", *command]
    if spec.cgroup is not None:
        procs = str(spec.cgroup / "cgroup.procs")
        join = 'echo $$ > "$0" && exec "$@"'
        command = ["/bin/sh", "-c", join, procs, *command]
    return command


def describe(command: Sequence[str]) -> str:
    """The command as one shell line (for logs)."""
    return shlex.join(command)
