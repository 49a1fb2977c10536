"""Fixtures of the trainer integration tests: the unit tests' tiny model + dataset files, and a
real SSH host with the platform's key."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.sshd_hosts import SshHost, generate_key, sshd_hosts
from tests.unit.trainer.conftest import tiny_files

__all__ = ["tiny_files"]


@pytest.fixture
def client_key(tmp_path: Path) -> Path:
    """The platform's private key for the test hosts (``.pub`` beside it)."""
    generate_key(tmp_path / "client")
    return tmp_path / "client"


@pytest.fixture
def host(client_key: Path) -> Iterator[SshHost]:
    """One real sshd host (network namespace) that accepts ``client_key``."""
    with sshd_hosts(1) as (made,):
        made.authorize(client_key.with_suffix(".pub").read_text())
        yield made
