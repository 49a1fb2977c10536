"""How to reach a node over SSH (:class:`NodeAccess`), rendered once for OpenSSH (the
provisioner's probes and Ansible) and once for asyncssh (the trainer's long-lived
connections), so both speak with the same options and the same host-key policy
(:mod:`shared.nodes`). Commands run through OpenSSH with :func:`run_command`."""

from __future__ import annotations

import asyncio
import math
import shlex
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.errors import ProviderError

__all__ = [
    "SSH_FAILED",
    "HostKeyPolicy",
    "Jump",
    "NodeAccess",
    "communicate",
    "parse_jump",
    "run_command",
]

#: ssh's own exit status when the connection (not the remote command) failed
SSH_FAILED = 255


class HostKeyPolicy(StrEnum):
    """What a connection does with the node's host key (see :mod:`shared.nodes`)."""

    #: the key must already be in ``known_hosts``; an unknown or changed key is refused
    PINNED = "pinned"
    #: the first contact records the key into ``known_hosts`` (a file of the platform's own,
    #: never the user's ``~/.ssh``); from then on it is :attr:`PINNED`. The provisioner's.
    PIN_ON_FIRST_USE = "pin-on-first-use"
    #: no check at all: only ever an operator's explicit opt-in (unsafe)
    UNCHECKED = "unchecked"


@dataclass(frozen=True)
class Jump:
    """A jump host the connection goes through (``[user@]host[:port]``)."""

    host: str
    port: int = 22
    user: str | None = None

    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host


def parse_jump(value: str) -> Jump:
    """``[user@]host[:port]`` (what :func:`check_proxy` makes) as a :class:`Jump`."""
    user_host, _, port = value.rpartition(":")
    if not user_host:
        user_host, port = value, "22"
    user, _, host = user_host.rpartition("@")
    if not host or not port.isdigit():
        raise ProviderError(f"invalid jump host {value!r}", code="invalid_node_value")
    return Jump(host=host, port=int(port), user=user or None)


@dataclass(frozen=True)
class NodeAccess:
    """Everything needed to reach one node: ``user@host:port``, through ``jump`` if set,
    with ``identity_files`` only (none: ssh's defaults) and host keys checked against
    ``known_hosts`` (None: ``~/.ssh/known_hosts``) under ``host_keys``. A node that stops
    answering is given up after ``keepalive_count`` unanswered keepalives."""

    host: str
    port: int = 22
    user: str | None = None
    jump: Jump | None = None
    identity_files: tuple[str, ...] = ()
    known_hosts: str | None = None
    host_keys: HostKeyPolicy = HostKeyPolicy.PINNED
    #: the node's announced host keys (OpenSSH public-key lines, ``NodeInfo.host_keys``):
    #: when set, asyncssh checks the node against exactly these and the jump host against
    #: ``jump_key_lines``, and ``known_hosts`` is not read. OpenSSH (the provisioner, which
    #: pins keys into files) always uses ``known_hosts``.
    key_lines: tuple[str, ...] = ()
    jump_key_lines: tuple[str, ...] = ()
    connect_timeout: float = 10
    keepalive_interval: float = 15
    keepalive_count: int = 3

    @property
    def pinned_in(self) -> str:
        """Where the host keys checked come from, for messages."""
        if self.key_lines:
            return "the host keys the provisioner announced with the node"
        return self.known_hosts or "~/.ssh/known_hosts"

    @property
    def where(self) -> str:
        """``user@host:port``, for messages."""
        return f"{self.destination()}:{self.port}"

    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def _policy(self) -> HostKeyPolicy:
        # Recording keys is only safe into a file of our own: without one, nothing is
        # recorded and an unknown key is refused.
        if self.host_keys is HostKeyPolicy.PIN_ON_FIRST_USE and not self.known_hosts:
            return HostKeyPolicy.PINNED
        return self.host_keys

    # -- OpenSSH ------------------------------------------------------------------------

    def openssh_options(self) -> list[str]:
        """ssh options (no destination), through the jump host if any. The jump goes through
        ``ProxyCommand`` with the same options: ``-J`` would not pass our key and
        known_hosts to the jump."""
        policy = self._policy()
        strict = {
            HostKeyPolicy.PINNED: "yes",
            HostKeyPolicy.PIN_ON_FIRST_USE: "accept-new",
            HostKeyPolicy.UNCHECKED: "no",
        }[policy]
        opts = [
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={max(1, math.ceil(self.connect_timeout))}",
            "-o", f"StrictHostKeyChecking={strict}",
            "-o", f"ServerAliveInterval={max(1, math.ceil(self.keepalive_interval))}",
            "-o", f"ServerAliveCountMax={self.keepalive_count}",
            "-o", "LogLevel=ERROR",
        ]  # fmt: skip
        known_hosts = "/dev/null" if policy is HostKeyPolicy.UNCHECKED else self.known_hosts
        if known_hosts:  # that file only: the system-wide one is never consulted
            opts += ["-o", f"UserKnownHostsFile={known_hosts}"]
            opts += ["-o", "GlobalKnownHostsFile=/dev/null"]
        if self.identity_files:
            opts += ["-o", "IdentitiesOnly=yes"]
            for path in self.identity_files:
                opts += ["-i", path]
        if self.jump:
            jump = ["ssh", *opts, "-W", "%h:%p", "-p", str(self.jump.port), self.jump.destination()]
            opts += ["-o", "ProxyCommand=" + shlex.join(jump)]
        return opts

    def openssh_argv(self, script: str) -> list[str]:
        """``ssh`` running the shell script ``script`` on the node."""
        return [
            "ssh",
            *self.openssh_options(),
            "-p", str(self.port),
            self.destination(),
            "/bin/sh -c " + shlex.quote(script),
        ]  # fmt: skip

    # -- asyncssh -----------------------------------------------------------------------

    def asyncssh_options(self, *, jump: bool = False) -> dict[str, Any]:
        """Keyword arguments of ``asyncssh.connect`` for the node (``jump``: for its jump
        host; the host itself is the first positional argument)."""
        policy = self._policy()
        if policy is HostKeyPolicy.PIN_ON_FIRST_USE:
            # only OpenSSH records keys (accept-new); asyncssh connections only check them
            policy = HostKeyPolicy.PINNED
        # asyncssh: None = no check, () = the default known_hosts file, a path = that file,
        # (keys, CA keys, revoked keys) = exactly those keys
        known_hosts: Any = None if policy is HostKeyPolicy.UNCHECKED else (self.known_hosts or ())
        if policy is not HostKeyPolicy.UNCHECKED and self.key_lines:
            known_hosts = (_import_keys(self.jump_key_lines if jump else self.key_lines), [], [])
        options: dict[str, Any] = {
            "username": self.user,
            "port": self.port,
            "known_hosts": known_hosts,
            "connect_timeout": self.connect_timeout,
            "keepalive_interval": self.keepalive_interval,
            "keepalive_count_max": self.keepalive_count,
        }
        if jump and self.jump is not None:
            options.update(username=self.jump.user, port=self.jump.port)
        if options["username"] is None:
            del options["username"]  # asyncssh: the local user, as ssh does
        if self.identity_files:
            options["client_keys"] = list(self.identity_files)
        return options


def _import_keys(lines: tuple[str, ...]) -> list[Any]:
    """asyncssh keys of OpenSSH public-key lines; one that cannot be read is a clear,
    non-retryable ``host_key_mismatch`` (no key of it can be trusted)."""
    import asyncssh

    try:
        return [asyncssh.import_public_key(line) for line in lines]
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise ProviderError(
            f"an announced host key cannot be read ({exc}): no host key of the node can be trusted",
            code="host_key_mismatch",
        ) from None


async def communicate(argv: list[str], timeout: float) -> tuple[int, str, str]:
    """Run ``argv`` (stdin empty) for at most ``timeout`` seconds: (exit, stdout, stderr);
    exit 124 when it was killed for running too long."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return 124, "", f"timed out after {timeout:.0f} s"
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


async def run_command(
    access: NodeAccess, script: str, *, timeout: float = 60
) -> tuple[int, str, str]:
    """Run a shell script on the node over OpenSSH; exit :data:`SSH_FAILED` (255) means ssh
    itself failed (:func:`shared.nodes.errors.classify_ssh_failure` reads its stderr)."""
    return await communicate(access.openssh_argv(script), timeout)
