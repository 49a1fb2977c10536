"""A PostgreSQL server of a test's own, which the test may stop, restart or cut off without
disturbing the machine's shared server (the other tests' databases live there).

It runs the machine's PostgreSQL binaries (``/usr/lib/postgresql/<v>/bin``) as the
``postgres`` user (``initdb`` refuses root) on a free port, trust auth on loopback, in a
directory under /tmp that the context removes. Fails clearly where the binaries or that
user are missing (scripts/bootstrap.sh installs them).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.infra import free_port

__all__ = ["PrivatePostgres", "private_postgres"]


def _bin_dir() -> Path | None:
    root = Path("/usr/lib/postgresql")
    versions = sorted(root.iterdir(), key=lambda p: p.name) if root.is_dir() else []
    for version in reversed(versions):
        if (version / "bin" / "pg_ctl").exists():
            return version / "bin"
    return None


@dataclass
class PrivatePostgres:
    bin_dir: Path
    data: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://aidp@127.0.0.1:{self.port}/aidp"

    def _pg(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        # no pipes: the server pg_ctl starts would hold them open (its output goes to -l)
        return subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            check=check,
            timeout=120,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg(
            "pg_ctl",
            "-D",
            str(self.data / "db"),
            "-l",
            str(self.data / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast`` closes every connection, as a restart does)."""
        self._pg("pg_ctl", "-D", str(self.data / "db"), "-m", mode, "-w", "stop", check=False)

    def restart(self, *, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        raise RuntimeError("no PostgreSQL server: scripts/bootstrap.sh installs it")
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("no postgres user: scripts/bootstrap.sh installs postgresql") from None
    data = Path(tempfile.mkdtemp(prefix="aidp-pg-"))
    os.chown(data, owner.pw_uid, owner.pw_gid)
    server = PrivatePostgres(bin_dir, data, free_port())
    try:
        server._pg("initdb", "-D", str(data / "db"), "-U", "aidp", "--auth=trust", "-E", "UTF8")
        server.start()
        server._pg("createdb", "-h", "127.0.0.1", "-p", str(server.port), "-U", "aidp", "aidp")
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(data, ignore_errors=True)
