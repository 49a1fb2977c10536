"""The provisioner's ssh options come from the shared transport (:mod:`shared.nodes`):
a node's host key is pinned on first contact into the node's own known_hosts, only the
run's key is offered, the jump host gets the same, and ssh's failures read clearly."""

from __future__ import annotations

import shlex
import socket
from typing import Any

from services.provisioner.drivers.base import Node
from services.provisioner.drivers.sshcmd import (
    classify_ssh_failure,
    node_ssh_options,
    run_ssh,
)
from shared.nodes import SSH_FAILED


def _node(**kw: Any) -> Node:
    values: dict[str, Any] = {
        "name": "ssh-0",
        "index": 0,
        "provider": "ssh",
        "address": "10.0.0.5",
        "workdir": "/root/.aidp-node/runs/r",
        "env_root": "/root/.aidp-node/envs",
        "tools_dir": "/root/.aidp-node/bin",
        "ssh_user": "root",
        "identity_file": "/state/run/keys/0",
        "known_hosts": "/data/known_hosts/owner",
    }
    values.update(kw)
    return Node(**values)


def test_node_options_pin_on_first_use_with_the_runs_key_only() -> None:
    opts = node_ssh_options(_node(), connect_timeout=7)
    pairs = [opts[i + 1] for i in range(0, len(opts), 2) if opts[i] == "-o"]
    assert pairs == [
        "BatchMode=yes",
        "ConnectTimeout=7",
        "StrictHostKeyChecking=accept-new",
        "ServerAliveInterval=15",
        "ServerAliveCountMax=3",
        "LogLevel=ERROR",
        "UserKnownHostsFile=/data/known_hosts/owner",
        "GlobalKnownHostsFile=/dev/null",
        "IdentitiesOnly=yes",
    ]
    assert opts[-2:] == ["-i", "/state/run/keys/0"]


def test_the_jump_host_is_reached_with_the_same_options() -> None:
    opts = node_ssh_options(_node(proxy="guest@146.152.1.2:2222"))
    assert opts[-2] == "-o" and opts[-1].startswith("ProxyCommand=")
    jump = shlex.split(opts[-1].removeprefix("ProxyCommand="))
    assert jump == ["ssh", *opts[:-2], "-W", "%h:%p", "-p", "2222", "guest@146.152.1.2"]


async def test_an_unreachable_node_fails_clearly() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    node = _node(address="127.0.0.1", ssh_port=port, identity_file=None, known_hosts=None)
    rc, _, err = await run_ssh(node, "true", timeout=30, connect_timeout=5)
    assert rc == SSH_FAILED
    error = classify_ssh_failure(node, err)
    assert str(error).startswith(f"node ssh-0 (root@127.0.0.1:{port}) is unreachable")
    assert error.code == "node_unreachable" and error.retryable
