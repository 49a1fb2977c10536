"""Host keys announced with a node (issue 17 item 2): the provisioner reads the keys it
pinned out of the node's known_hosts (:func:`shared.nodes.pinned_host_keys`,
``Node.info``), they travel in ``NodeInfo.host_keys``/``proxy_host_keys`` (optional: older
producers still validate), and the trainer checks the node against exactly those."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.provisioner.drivers.base import Node
from services.trainer.nodes.factory import node_executor, pinned_known_hosts
from services.trainer.nodes.ssh import SSHExecutor
from services.trainer.settings import TrainerSettings
from shared.errors import ProviderError
from shared.events import EnvInfo, NodeInfo, NodesReady, NodesReplaced
from shared.nodes import NodeAccess, pinned_host_keys


def _public_key(path: Path) -> str:
    """A fresh ed25519 host key's public line, as ``<type> <base64>``."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "host", "-f", str(path)],
        check=True,
    )
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


@pytest.fixture
def keys(tmp_path: Path) -> tuple[str, str, str]:
    return tuple(_public_key(tmp_path / f"k{i}") for i in range(3))  # type: ignore[return-value]


def _env() -> EnvInfo:
    return EnvInfo(lock_hash="c" * 64, python=sys.executable, torch_version="2.13.0")


def _node(**kw: object) -> NodeInfo:
    values: dict[str, object] = {
        "name": "idc-0",
        "address": "10.0.0.5",
        "ssh_user": "root",
        "provider": "idc",
        "workdir": "/w",
    }
    return NodeInfo.model_validate(values | kw)


def test_the_keys_round_trip_through_both_node_events(keys: tuple[str, str, str]) -> None:
    node = _node(proxy="guest@203.0.113.7:22", host_keys=[keys[0]], proxy_host_keys=[keys[1]])
    ready = NodesReady.model_validate_json(NodesReady(nodes=[node], env=_env()).model_dump_json())
    assert ready.nodes[0] == node
    assert ready.nodes[0].host_keys == (keys[0],) and ready.nodes[0].proxy_host_keys == (keys[1],)
    replaced = NodesReplaced(nodes=[node], replaced=["idc-0"], reason="lost", replacements=1)
    assert NodesReplaced.model_validate_json(replaced.model_dump_json()).nodes == [node]


def test_an_older_producers_node_still_validates_without_keys() -> None:
    older = {"name": "idc-0", "address": "10.0.0.5", "workdir": "/w", "provider": "idc"}
    node = NodeInfo.model_validate(older)
    assert node.host_keys == () and node.proxy_host_keys == ()


@pytest.mark.parametrize(
    "bad",
    ["", "AAAAC3NzaC1lZDI1NTE5", "ssh-ed25519 AAAA\nevil.example ssh-ed25519 AAAA", "x" * 80],
)
def test_a_key_that_is_not_one_openssh_line_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="not an OpenSSH public-key line"):
        _node(host_keys=[bad])


def test_the_provisioner_announces_the_keys_pinned_for_the_node_and_its_jump(
    tmp_path: Path, keys: tuple[str, str, str]
) -> None:
    node_key, jump_key, other_key = keys
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(
        f"10.0.0.5 {node_key}\n[203.0.113.7]:2222 {jump_key}\n10.0.0.6 {other_key}\n"
    )
    node = Node(
        name="idc-0",
        index=0,
        provider="idc",
        address="10.0.0.5",
        workdir="/w",
        env_root="/e",
        tools_dir="/t",
        ssh_user="root",
        proxy="guest@203.0.113.7:2222",
        known_hosts=str(known_hosts),
    )
    info = node.info(python=None)
    assert info.host_keys == (node_key,) and info.proxy_host_keys == (jump_key,)
    # another host's key is never announced; a host not pinned (yet) announces none
    assert pinned_host_keys(known_hosts, "10.0.0.7") == ()
    assert pinned_host_keys(tmp_path / "missing", "10.0.0.5") == ()
    unpinned = Node(**{**node.record(), "address": "10.0.0.7"})
    assert unpinned.info(python=None).host_keys == ()
    assert unpinned.info(python=None).proxy_host_keys == ()  # no node key: none at all
    local = Node(**{**node.record(), "connection": "local", "provider": "local"})
    assert local.info(python=None).host_keys == ()


def test_hashed_entries_are_read_as_ssh_reads_them(
    tmp_path: Path, keys: tuple[str, str, str]
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[10.0.0.5]:2200 {keys[0]}\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(known_hosts)], check=True, capture_output=True)
    assert "10.0.0.5" not in known_hosts.read_text()
    assert pinned_host_keys(known_hosts, "10.0.0.5", 2200) == (keys[0],)


def test_the_trainer_checks_a_node_announced_with_keys_against_exactly_those(
    tmp_path: Path, keys: tuple[str, str, str]
) -> None:
    node_key, jump_key, _ = keys
    owner = uuid.uuid4()
    override = TrainerSettings(data_dir=tmp_path, trainer_known_hosts=tmp_path / "all")
    for provider in ("idc", "ssh"):
        node = _node(
            provider=provider,
            proxy="guest@203.0.113.7:22",
            host_keys=[node_key],
            proxy_host_keys=[jump_key],
        )
        for settings in (TrainerSettings(data_dir=tmp_path), override):
            assert pinned_known_hosts(node, settings, owner) is None  # no file is read
            executor = node_executor(node, settings, tenant=uuid.uuid4(), owner=owner)
            assert isinstance(executor, SSHExecutor)
            access = executor.access
            assert access.key_lines == (node_key,) and access.jump_key_lines == (jump_key,)
            trusted = access.asyncssh_options()["known_hosts"]
            assert [k.export_public_key().decode().strip() for k in trusted[0]] == [node_key]
            jump_trusted = access.asyncssh_options(jump=True)["known_hosts"]
            exported = [k.export_public_key().decode().strip() for k in jump_trusted[0]]
            assert exported == [jump_key]
    # announced without keys (an older provisioner): today's file rule
    assert pinned_known_hosts(_node(), TrainerSettings(data_dir=tmp_path), owner) is None
    assert pinned_known_hosts(_node(), override, owner) == str(tmp_path / "all")
    assert pinned_known_hosts(_node(provider="ssh"), TrainerSettings(data_dir=tmp_path), owner)


def test_a_jump_host_without_announced_keys_trusts_no_key(keys: tuple[str, str, str]) -> None:
    access = NodeAccess(host="10.0.0.5", key_lines=(keys[0],), jump=None)
    assert access.asyncssh_options(jump=True)["known_hosts"] == ([], [], [])
    assert "announced" in access.pinned_in


def test_an_unreadable_announced_key_is_a_clear_host_key_mismatch() -> None:
    access = NodeAccess(host="10.0.0.5", key_lines=("ssh-ed25519 AAAAnotakey",))
    with pytest.raises(ProviderError, match="announced host key cannot be read") as caught:
        access.asyncssh_options()
    assert caught.value.code == "host_key_mismatch" and not caught.value.retryable
