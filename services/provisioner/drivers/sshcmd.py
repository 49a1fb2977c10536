"""OpenSSH plumbing shared by the ssh and idc drivers: a driver's ``Node`` as a
:class:`shared.nodes.NodeAccess` (the one set of ssh options and the one host-key policy of
:mod:`shared.nodes`: host keys pinned on first contact) for probes and for Ansible,
readable errors from ssh's own output, the probe and the run-user check.

What a node answers is untrusted: the probe's answer is parsed strictly
(:func:`~services.provisioner.drivers.nodevalues.parse_probe_answer`) and the connection
values handed to Ansible are checked again in :func:`ansible_ssh_vars`."""

from __future__ import annotations

import shlex
from dataclasses import replace
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
from shared.nodes import (
    SSH_FAILED,
    HostKeyPolicy,
    NodeAccess,
    communicate,
    parse_jump,
    run_command,
    write_key,
)
from shared.nodes import classify_ssh_failure as _classify

__all__ = [
    "absolute",
    "ansible_ssh_vars",
    "RUN_USER",
    "classify_ssh_failure",
    "detect_run_user",
    "node_access",
    "node_ssh_options",
    "probe",
    "probe_script",
    "run_user_script",
    "run_local",
    "run_ssh",
    "write_key",
]

_PROBE_FAIL = SSH_FAILED  # ssh's own exit status for connection failures


def node_access(node: Node, *, connect_timeout: int = 10) -> NodeAccess:
    """How to reach ``node`` (:mod:`shared.nodes`): its key, and its host key pinned on
    first contact into the node's known_hosts (per user, or per run for fresh VMs)."""
    return NodeAccess(
        host=node.address,
        port=node.ssh_port,
        user=node.ssh_user,
        jump=parse_jump(node.proxy) if node.proxy else None,
        identity_files=(node.identity_file,) if node.identity_file else (),
        known_hosts=node.known_hosts,
        host_keys=HostKeyPolicy.PIN_ON_FIRST_USE,
        connect_timeout=connect_timeout,
    )


def node_ssh_options(node: Node, *, connect_timeout: int = 10) -> list[str]:
    """ssh options (no destination) reaching ``node``, through its jump host if any."""
    return node_access(node, connect_timeout=connect_timeout).openssh_options()


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
    return _classify(
        name=node.name,
        where=f"{node.ssh_user}@{node.address}:{node.ssh_port}",
        known_hosts=node.known_hosts,
        stderr=stderr,
    )


async def run_local(script: str, *, timeout: float = 60) -> tuple[int, str, str]:
    """Run a shell script on this machine."""
    return await communicate(["/bin/sh", "-c", script], timeout)


async def run_ssh(
    node: Node, script: str, *, timeout: float = 60, connect_timeout: int = 10
) -> tuple[int, str, str]:
    """Run a shell script on ``node`` over ssh; exit 255 means ssh itself failed."""
    access = node_access(node, connect_timeout=connect_timeout)
    return await run_command(access, script, timeout=timeout)


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
