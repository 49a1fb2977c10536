"""Fixtures for real components: a vhost, a database and an OpenBao server per need."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.bus.memory import MemoryBroker
from tests.support import infra
from tests.support.processes import kill_processes_under


@pytest.fixture(scope="session")
def amqp_base() -> Iterator[str]:
    with infra.amqp_base_url() as url:
        yield url


@pytest.fixture
def amqp_url(amqp_base: str) -> Iterator[str]:
    """A fresh, empty RabbitMQ vhost for one test."""
    url, vhost = infra.create_vhost(amqp_base)
    yield url
    infra.delete_vhost(amqp_base, vhost)


@pytest.fixture(scope="session")
def postgres_base() -> Iterator[str]:
    with infra.postgres_base_url() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_base: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    url, name = infra.create_database(postgres_base)
    yield url
    infra.drop_database(postgres_base, name)


@pytest.fixture(scope="session")
def bao_server() -> Iterator[tuple[str, str]]:
    """A real OpenBao dev server for the session: (address, root token)."""
    with infra.bao_dev_server() as server:
        yield server


@pytest.fixture(scope="session", autouse=True)
def _no_leftover_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Model servers and training processes started by any test (in sessions of their own,
    so a test's teardown may miss them) do not outlive the test session."""
    yield
    kill_processes_under(tmp_path_factory.getbasetemp())


@pytest.fixture(autouse=True)
def _fresh_memory_broker() -> Iterator[None]:
    MemoryBroker.reset()
    yield
    MemoryBroker.reset()


@pytest.fixture(scope="session")
def namespaced_hosts() -> None:
    """sshd hosts in network namespaces must be possible here (root, sshd, ip): a missing
    prerequisite is a broken install (scripts/bootstrap.sh provides them), not a skip."""
    from tests.support.sshd_hosts import available

    reason = available()
    if reason is not None:
        pytest.fail(f"cannot create sshd hosts: {reason}")
