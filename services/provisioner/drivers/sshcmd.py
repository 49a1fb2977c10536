"""OpenSSH plumbing shared by the ssh and idc drivers: one set of options for probes and for
Ansible, a jump host through ``ProxyCommand`` (``-J`` would not pass our key and
known_hosts to the jump), and readable errors from ssh's own output.

What a node answers is untrusted: the probe's answer is parsed strictly
(:func:`~services.provisioner.drivers.nodevalues.parse_probe_answer`) and the connection
values handed to Ansible are checked again in :func:`ansible_ssh_vars`."""

from __future__ import annotations

import asyncio
import os
import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any

from services.provisioner.drivers.base import Node, NodeDriver
from services.provisioner.drivers.nodevalues import (
    check_host,
    check_path,
    check_port,
    check_user,
    parse_probe_answer,
)
from shared.errors import ProviderError

__all__ = [
    "absolute",
    "ansible_ssh_vars",
    "RUN_USER",
    "classify_ssh_failure",
    "detect_run_user",
    "node_ssh_options",
    "probe",
    "probe_script",
    "run_user_script",
    "run_local",
    "run_ssh",
    "write_key",
]

_PROBE_FAIL = 255  # ssh's own exit status for connection failures


def write_key(path: Path, private_key: str) -> Path:
    """Write a private key 0600 (created with that mode: never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = private_key if private_key.endswith("\n") else private_key + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)
    return path


def _base_options(
    *, identity_file: str | None, known_hosts: str | None, connect_timeout: int
) -> list[str]:
    opts = [
        "-o", "BatchMode=yes",
        "-o", f"ConnectTimeout={connect_timeout}",
        "-o", "StrictHostKeyChecking=accept-new",
        "-o", "ServerAliveInterval=15",
        "-o", "LogLevel=ERROR",
    ]  # fmt: skip
    if known_hosts:
        opts += ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null"]
    if identity_file:
        opts += ["-o", "IdentitiesOnly=yes", "-i", identity_file]
    return opts


def node_ssh_options(node: Node, *, connect_timeout: int = 10) -> list[str]:
    """ssh options (no destination) reaching ``node``, through its jump host if any."""
    opts = _base_options(
        identity_file=node.identity_file,
        known_hosts=node.known_hosts,
        connect_timeout=connect_timeout,
    )
    if node.proxy:
        user_host, _, port = node.proxy.rpartition(":")
        if not user_host:
            user_host, port = node.proxy, "22"
        jump = ["ssh", *opts, "-W", "%h:%p", "-p", port, user_host]
        opts += ["-o", "ProxyCommand=" + shlex.join(jump)]
    return opts


def ansible_ssh_vars(node: Node, *, connect_timeout: int = 10) -> dict[str, Any]:
    """Inventory variables for Ansible's ssh connection to ``node`` (each node-derived value
    checked against its pattern; ProviderError when one does not fit)."""
    opts = node_ssh_options(node, connect_timeout=connect_timeout)
    where = f"node {node.name}"
    python3 = node.extra.get("python3", "/usr/bin/python3")
    return {
        "ansible_connection": "ssh",
        "ansible_host": check_host(node.address, what=f"{where} address"),
        "ansible_port": check_port(node.ssh_port, what=f"{where} port"),
        "ansible_user": check_user(node.ssh_user, what=f"{where} user"),
        "ansible_ssh_common_args": shlex.join(opts),
        "ansible_ssh_pipelining": True,
        # Discovery could pick a broken shim (pyenv); the probe's python3 is known to work.
        "ansible_python_interpreter": check_path(python3, what=f"{where} python3"),
    }


def classify_ssh_failure(node: Node, stderr: str) -> ProviderError:
    """Turn ssh's stderr for a failed connection into a clear, retry-aware error."""
    where = f"{node.ssh_user}@{node.address}:{node.ssh_port}"
    text = stderr.strip()
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or "Host key verification failed" in text:
        return ProviderError(
            f"node {node.name} ({where}): host key mismatch: the host's key differs from the"
            f" one recorded in {node.known_hosts}. If the host was reinstalled, remove its"
            f" entry; otherwise someone may be intercepting the connection. ssh said: {text}",
            code="host_key_mismatch",
        )
    if "Permission denied" in text:
        return ProviderError(
            f"node {node.name} ({where}): authentication refused (is the identity's public key"
            f" in the user's authorized_keys?). ssh said: {text}",
            code="ssh_auth_failed",
        )
    retryable = any(
        s in text for s in ("Connection refused", "timed out", "No route to host", "unreachable")
    )
    return ProviderError(
        f"node {node.name} ({where}) is unreachable: {text or 'ssh failed without a message'}",
        retryable=retryable,
        code="node_unreachable",
    )


async def _communicate(argv: list[str], timeout: float) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return 124, "", f"timed out after {timeout:.0f} s"
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


async def run_local(script: str, *, timeout: float = 60) -> tuple[int, str, str]:
    """Run a shell script on this machine."""
    return await _communicate(["/bin/sh", "-c", script], timeout)


async def run_ssh(
    node: Node, script: str, *, timeout: float = 60, connect_timeout: int = 10
) -> tuple[int, str, str]:
    """Run a shell script on ``node`` over ssh; exit 255 means ssh itself failed."""
    argv = [
        "ssh",
        *node_ssh_options(node, connect_timeout=connect_timeout),
        "-p", str(node.ssh_port),
        f"{node.ssh_user}@{node.address}",
        "/bin/sh -c " + shlex.quote(script),
    ]  # fmt: skip
    return await _communicate(argv, timeout)


def probe_script(workdir: str) -> str:
    """Checks every node passes before Ansible runs (python3 is Ansible's need); prints the
    python3 version and the login's home (to make relative node paths absolute)."""
    return (
        "cd || exit 4\n"
        "command -v python3 >/dev/null 2>&1 || { echo 'python3 not found on PATH' >&2; exit 3; }\n"
        f"mkdir -p {shlex.quote(workdir)} && python3 -c 'import sys; print(sys.version.split()[0])'"
        ' && command -v python3 && printf "%s\\n" "$HOME"'
    )


def absolute(path: str, home: str) -> str:
    return path if path.startswith("/") else f"{home.rstrip('/')}/{path}"


async def probe(node: Node, *, connect_timeout: int = 10) -> Node:
    """Connect, check Python and create the workdir; returns the node with absolute paths.

    Raises ProviderError "invalid probe answer" when the node's answer (Python version,
    python3 path, home) does not fit its strict pattern."""
    if node.connection == "local":
        rc, out, err = await run_local(probe_script(node.workdir))
    else:
        rc, out, err = await run_ssh(
            node,
            probe_script(node.workdir),
            timeout=connect_timeout * 3 + 30,
            connect_timeout=connect_timeout,
        )
        if rc == _PROBE_FAIL:
            raise classify_ssh_failure(node, err)
    if rc == 3:
        raise ProviderError(
            f"node {node.name} ({node.address}): python3 not found on PATH; Ansible and aidp"
            " need Python 3.8 or newer on every node",
            code="python_missing",
        )
    if rc != 0:
        raise ProviderError(
            f"node {node.name} ({node.address}): check failed (exit {rc}): {err.strip()}"
        )
    # The local node is this machine (the operator's own paths); every other node is not.
    remote = node.connection != "local"
    answer = parse_probe_answer(out, node=node.name, strict=remote)

    def path(value: str, what: str) -> str:
        value = absolute(value, answer.home)
        return check_path(value, what=f"node {node.name} {what}") if remote else value

    return replace(
        node,
        extra={**node.extra, "python3": answer.python3},
        workdir=path(node.workdir, "workdir"),
        env_root=path(node.env_root, "env root"),
        tools_dir=path(node.tools_dir, "tools dir"),
    )


#: The unprivileged user node_base creates for training and serving (``aidp_run_user``).
RUN_USER = "aidp-run"


def run_user_script(user: str = RUN_USER) -> str:
    """Prints ``user`` when it exists on the node and the login user can act as root (root
    itself, or passwordless sudo): what the trainer needs to start processes as it."""
    return (
        f"id -u {shlex.quote(user)} >/dev/null 2>&1 || exit 0\n"
        f'if [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; then echo {shlex.quote(user)}; fi'
    )


async def detect_run_user(driver: NodeDriver, node: Node, user: str = RUN_USER) -> str | None:
    """The node's run user (None: runs there go as the login user, with a warning)."""
    rc, out, _ = await driver.run(node, run_user_script(user), timeout=60)
    return user if rc == 0 and out.strip().splitlines()[-1:] == [user] else None
