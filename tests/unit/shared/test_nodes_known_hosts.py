"""Where host keys are pinned (``shared/nodes/known_hosts.py``): one rule the provisioner
and the trainer both call, and a named file that does not exist trusts no host."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest

from services.provisioner.settings import ProvisionerSettings
from services.trainer.settings import TrainerSettings
from shared.errors import ProviderError
from shared.nodes import (
    HostKeyPolicy,
    NodeAccess,
    known_hosts_dir,
    open_connection,
    user_known_hosts,
)


def test_the_folder_is_the_setting_or_the_data_dirs() -> None:
    assert known_hosts_dir(Path("/data")) == Path("/data/known_hosts")
    assert known_hosts_dir(Path("/data"), Path("/shared/kh")) == Path("/shared/kh")


def test_a_users_file_is_named_by_the_user_id() -> None:
    owner = uuid.uuid4()
    folder = Path("/kh")
    assert user_known_hosts(folder, owner) == folder / str(owner)
    # the trainer keeps the owner as text (any spelling of the id): the same file
    assert user_known_hosts(folder, str(owner).upper()) == folder / str(owner)
    assert user_known_hosts(folder, None) == folder / "platform"


@pytest.mark.parametrize("owner", ["../../etc/passwd", "alice", "/abs"])
def test_an_owner_that_is_not_a_user_id_never_becomes_a_path(owner: str) -> None:
    with pytest.raises(ProviderError, match="is not a user id") as caught:
        user_known_hosts(Path("/kh"), owner)
    assert caught.value.code == "invalid_node_value"


def test_both_services_find_the_same_file(tmp_path: Path) -> None:
    owner = uuid.uuid4()
    for configured in (None, tmp_path / "shared-kh"):
        provisioner = ProvisionerSettings(data_dir=tmp_path, known_hosts_dir=configured)
        trainer = TrainerSettings(data_dir=tmp_path, known_hosts_dir=configured)
        pinned = user_known_hosts(provisioner.resolved_known_hosts_dir(), owner)
        assert pinned == user_known_hosts(trainer.resolved_known_hosts_dir(), owner)
        assert pinned.parent == (configured or tmp_path / "known_hosts")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_missing_known_hosts_file_is_refused_clearly(tmp_path: Path) -> None:
    missing = tmp_path / "known_hosts" / "nobody"
    access = NodeAccess(host="127.0.0.1", port=_closed_port(), known_hosts=str(missing))
    with pytest.raises(ProviderError, match="no host key is pinned") as caught:
        await open_connection(access, name="ssh-0")
    assert caught.value.code == "host_key_mismatch" and not caught.value.retryable
    assert str(missing) in str(caught.value)
    # the explicit opt-out never reads the file: the connection itself is what fails
    unchecked = NodeAccess(
        host="127.0.0.1",
        port=access.port,
        known_hosts=str(missing),
        host_keys=HostKeyPolicy.UNCHECKED,
        connect_timeout=5,
    )
    with pytest.raises(ProviderError) as refused:
        await open_connection(unchecked, name="ssh-0")
    assert refused.value.code == "node_unreachable"
