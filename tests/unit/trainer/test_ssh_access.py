"""The trainer reaches SSH nodes through the shared transport (:mod:`shared.nodes`): the
node's jump host, the platform's keys, pinned host keys (never recorded by the trainer)
and keepalives from the node timeout."""

from __future__ import annotations

import socket

import pytest

from services.trainer.nodes.factory import executor_for
from services.trainer.nodes.ssh import SSHExecutor
from shared.errors import ProviderError
from shared.events import NodeInfo
from shared.nodes import HostKeyPolicy, Jump


def _node(**kw: object) -> NodeInfo:
    values: dict[str, object] = {
        "name": "idc-0",
        "address": "10.0.0.5",
        "ssh_user": "ubuntu",
        "ssh_port": 22,
        "provider": "idc",
        "workdir": "/home/ubuntu/.aidp-node/runs/r",
    }
    values.update(kw)
    return NodeInfo.model_validate(values)


def test_the_executor_reaches_the_node_through_its_jump_host_with_pinned_keys() -> None:
    executor = executor_for(
        _node(proxy="guest@146.152.1.2:22"),
        ssh_keys=["/keys/platform"],
        known_hosts="/etc/aidp/known_hosts",
        node_timeout=60,
    )
    assert isinstance(executor, SSHExecutor)
    access = executor.access
    assert access.jump == Jump(host="146.152.1.2", port=22, user="guest")
    assert (access.user, access.host, access.port) == ("ubuntu", "10.0.0.5", 22)
    assert access.identity_files == ("/keys/platform",)
    assert access.host_keys is HostKeyPolicy.PINNED
    assert (access.connect_timeout, access.keepalive_interval) == (15.0, 20.0)
    options = access.asyncssh_options()
    assert options["known_hosts"] == "/etc/aidp/known_hosts"
    assert options["keepalive_count_max"] == 3
    jump = access.asyncssh_options(jump=True)
    assert (jump["username"], jump["port"], jump["known_hosts"]) == (
        "guest",
        22,
        "/etc/aidp/known_hosts",
    )


def test_skipping_the_host_key_check_is_an_explicit_opt_in() -> None:
    assert SSHExecutor(_node()).access.asyncssh_options()["known_hosts"] == ()
    opted_in = SSHExecutor(_node(), accept_unknown_host_keys=True)
    assert opted_in.access.host_keys is HostKeyPolicy.UNCHECKED
    assert opted_in.access.asyncssh_options()["known_hosts"] is None


async def test_an_unreachable_node_is_a_retryable_provider_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    executor = SSHExecutor(_node(address="127.0.0.1", ssh_port=port), connect_timeout=5)
    try:
        with pytest.raises(ProviderError, match="cannot reach node idc-0 over SSH") as caught:
            await executor.run(["true"])
        assert caught.value.code == "node_unreachable" and caught.value.retryable
    finally:
        await executor.close()
