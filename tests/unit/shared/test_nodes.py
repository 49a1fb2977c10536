"""The one SSH transport (``shared/nodes``): its options for OpenSSH and asyncssh, the
host-key policy they carry, and one classification of ssh failures."""

from __future__ import annotations

import shlex
import socket
import stat
from pathlib import Path

import asyncssh
import pytest

from shared.errors import ProviderError
from shared.nodes import (
    HostKeyPolicy,
    Jump,
    NodeAccess,
    classify_connect_error,
    classify_ssh_failure,
    communicate,
    open_connection,
    parse_jump,
    write_key,
)


def _option(opts: list[str], name: str) -> str | None:
    values = [o.split("=", 1)[1] for o in opts if o.startswith(f"{name}=")]
    assert len(values) <= 1, f"{name} given twice: {opts}"
    return values[0] if values else None


# -- jump hosts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "jump"),
    [
        ("guest@146.152.1.2:22", Jump(host="146.152.1.2", port=22, user="guest")),
        ("guest@bastion:2222", Jump(host="bastion", port=2222, user="guest")),
        ("bastion", Jump(host="bastion", port=22, user=None)),
        ("bastion:2200", Jump(host="bastion", port=2200, user=None)),
    ],
)
def test_parse_jump(value: str, jump: Jump) -> None:
    assert parse_jump(value) == jump


@pytest.mark.parametrize("value", ["guest@h:22;id", "guest@:22", "h:"])
def test_parse_jump_refuses_what_does_not_fit(value: str) -> None:
    with pytest.raises(ProviderError, match="invalid jump host"):
        parse_jump(value)


# -- OpenSSH -----------------------------------------------------------------------------


def test_pin_on_first_use_records_into_our_own_known_hosts_only() -> None:
    access = NodeAccess(
        host="10.0.0.5",
        user="root",
        known_hosts="/data/known_hosts/u1",
        host_keys=HostKeyPolicy.PIN_ON_FIRST_USE,
    )
    opts = access.openssh_options()
    assert _option(opts, "StrictHostKeyChecking") == "accept-new"
    assert _option(opts, "UserKnownHostsFile") == "/data/known_hosts/u1"
    assert _option(opts, "GlobalKnownHostsFile") == "/dev/null"
    assert _option(opts, "BatchMode") == "yes"
    # without a file of our own nothing is recorded: an unknown key is refused
    bare = NodeAccess(host="10.0.0.5", host_keys=HostKeyPolicy.PIN_ON_FIRST_USE)
    assert _option(bare.openssh_options(), "StrictHostKeyChecking") == "yes"
    assert _option(bare.openssh_options(), "UserKnownHostsFile") is None


def test_pinned_and_unchecked() -> None:
    pinned = NodeAccess(host="h", known_hosts="/k").openssh_options()
    assert _option(pinned, "StrictHostKeyChecking") == "yes"
    unchecked = NodeAccess(host="h", known_hosts="/k", host_keys=HostKeyPolicy.UNCHECKED)
    opts = unchecked.openssh_options()
    assert _option(opts, "StrictHostKeyChecking") == "no"
    assert _option(opts, "UserKnownHostsFile") == "/dev/null"  # nothing recorded either


def test_only_the_named_keys_are_offered_and_timeouts_are_whole_seconds() -> None:
    access = NodeAccess(
        host="h",
        identity_files=("/keys/0",),
        connect_timeout=2.5,
        keepalive_interval=10,
        keepalive_count=3,
    )
    opts = access.openssh_options()
    assert _option(opts, "IdentitiesOnly") == "yes"
    assert opts[opts.index("-i") + 1] == "/keys/0"
    assert _option(opts, "ConnectTimeout") == "3"
    assert (_option(opts, "ServerAliveInterval"), _option(opts, "ServerAliveCountMax")) == (
        "10",
        "3",
    )
    assert "-i" not in NodeAccess(host="h").openssh_options()


def test_the_jump_host_gets_the_same_key_known_hosts_and_policy() -> None:
    access = NodeAccess(
        host="10.0.0.5",
        port=2022,
        user="root",
        jump=parse_jump("guest@146.152.1.2:22"),
        identity_files=("/keys/0",),
        known_hosts="/run/known_hosts",
        host_keys=HostKeyPolicy.PIN_ON_FIRST_USE,
    )
    opts = access.openssh_options()
    proxy = shlex.split(_option(opts, "ProxyCommand") or "")
    assert opts[-2] == "-o"  # the ProxyCommand comes last, after the node's own options
    assert proxy == ["ssh", *opts[:-2], "-W", "%h:%p", "-p", "22", "guest@146.152.1.2"]
    argv = access.openssh_argv("echo hi")
    assert argv[0] == "ssh" and argv[1:-4] == opts
    assert argv[-4:] == ["-p", "2022", "root@10.0.0.5", "/bin/sh -c 'echo hi'"]


# -- asyncssh ----------------------------------------------------------------------------


def test_asyncssh_options_carry_the_same_policy() -> None:
    access = NodeAccess(
        host="10.0.0.5",
        port=2022,
        user="root",
        jump=parse_jump("guest@bastion:2200"),
        identity_files=("/keys/a",),
        known_hosts="/k",
        connect_timeout=7,
        keepalive_interval=10,
    )
    options = access.asyncssh_options()
    assert options == {
        "username": "root",
        "port": 2022,
        "known_hosts": "/k",
        "connect_timeout": 7,
        "keepalive_interval": 10,
        "keepalive_count_max": 3,
        "client_keys": ["/keys/a"],
    }
    jump = access.asyncssh_options(jump=True)
    assert (jump["username"], jump["port"], jump["known_hosts"]) == ("guest", 2200, "/k")
    assert jump["client_keys"] == ["/keys/a"]
    # no file: the default known_hosts (asyncssh's ()); the opt-in: no check (None)
    assert NodeAccess(host="h").asyncssh_options()["known_hosts"] == ()
    unchecked = NodeAccess(host="h", known_hosts="/k", host_keys=HostKeyPolicy.UNCHECKED)
    assert unchecked.asyncssh_options()["known_hosts"] is None
    # asyncssh never records a key: pin-on-first-use only checks there
    first_use = NodeAccess(host="h", known_hosts="/k", host_keys=HostKeyPolicy.PIN_ON_FIRST_USE)
    assert first_use.asyncssh_options()["known_hosts"] == "/k"
    assert "username" not in NodeAccess(host="h").asyncssh_options()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_open_connection_classifies_a_refused_connection() -> None:
    access = NodeAccess(host="127.0.0.1", port=_closed_port(), user="root", connect_timeout=5)
    with pytest.raises(ProviderError, match="cannot reach node n-0 over SSH") as caught:
        await open_connection(access, name="n-0")
    assert caught.value.code == "node_unreachable" and caught.value.retryable


# -- failures ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stderr", "code", "retryable"),
    [
        ("@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@", "host_key_mismatch", False),
        ("Host key verification failed.", "host_key_mismatch", False),
        ("root@h: Permission denied (publickey).", "ssh_auth_failed", False),
        ("ssh: connect to host h port 22: Connection refused", "node_unreachable", True),
        ("ssh: connect to host h port 22: Connection timed out", "node_unreachable", True),
        ("kex_exchange_identification: read: Connection reset by peer", "node_unreachable", False),
        ("", "node_unreachable", False),
    ],
)
def test_classify_ssh_failure(stderr: str, code: str, retryable: bool) -> None:
    error = classify_ssh_failure(name="ssh-0", where="root@h:22", known_hosts="/k", stderr=stderr)
    assert (error.code, error.retryable) == (code, retryable)
    assert str(error).startswith("node ssh-0 (root@h:22)")


@pytest.mark.parametrize(
    ("exc", "code", "retryable"),
    [
        (asyncssh.HostKeyNotVerifiable("Host key is not trusted"), "host_key_mismatch", False),
        (asyncssh.PermissionDenied("Permission denied"), "ssh_auth_failed", False),
        (ConnectionRefusedError(111, "Connection refused"), "node_unreachable", True),
        (asyncssh.ConnectionLost("Connection lost"), "node_unreachable", True),
    ],
)
def test_classify_connect_error(exc: BaseException, code: str, retryable: bool) -> None:
    error = classify_connect_error(exc, name="ssh-0", known_hosts="/k")
    assert (error.code, error.retryable) == (code, retryable)
    assert str(error).startswith("cannot reach node ssh-0 over SSH: ")


# -- keys and processes ------------------------------------------------------------------


def test_write_key_is_private_from_the_start(tmp_path: Path) -> None:
    path = write_key(tmp_path / "keys" / "0", "-----BEGIN KEY-----")
    assert path.read_text() == "-----BEGIN KEY-----\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


async def test_communicate_returns_124_past_its_timeout() -> None:
    assert await communicate(["/bin/sh", "-c", "echo out; echo err >&2"], 10) == (
        0,
        "out\n",
        "err\n",
    )
    rc, _, err = await communicate(["sleep", "5"], 0.2)
    assert rc == 124 and "timed out" in err
