"""Run aidp's services as real, separate processes (distributed mode) for e2e tests.

Every process logs to a file under the cluster's directory; ``kill``/``start`` let a test
SIGKILL a service at a random moment and bring it back, as an operator's supervisor would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from services import SERVICES
from tests.support.infra import free_port, management, wait_http_ready
from tests.support.processes import kill_processes_under

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ServiceProcess:
    name: str
    replica: int
    port: int
    log_path: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            # `aidp serve <name>`, as an operator runs one service (= python -m services.<name>)
            [sys.executable, "-m", "cli.main", "serve", self.name],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # SIGKILL of the group takes children (torchrun, servers)
        )
        log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the service process itself (its children are left, as in a real crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM the whole process group, then SIGKILL what is left."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait_ready(self, timeout: float = 90.0) -> None:
        if wait_http_ready(f"{self.url}/readyz", timeout=timeout, proc=self.proc, interval=0.3):
            return
        if not self.alive():
            raise RuntimeError(f"{self.name}#{self.replica} exited:\n{self.tail()}")
        raise TimeoutError(f"{self.name}#{self.replica} not ready:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Cluster:
    """Processes of every service (``replicas`` per service) sharing one set of settings."""

    root: Path
    env: dict[str, str]
    replicas: int = 1
    processes: dict[str, list[ServiceProcess]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ports = {name: [free_port() for _ in range(self.replicas)] for name in SERVICES}
        urls = {name: f"http://127.0.0.1:{ports[name][0]}" for name in SERVICES}
        common = {
            **self.env,
            "AIDP_MODE": "distributed",
            "AIDP_ALLOW_LOCAL_PROVIDER": "true",  # the cluster's runs use the local node
            # One test user runs ten projects at once (the scale scenario), above the default.
            "AIDP_USER_MAX_ACTIVE_RUNS": "0",
            "AIDP_AUTH_URL": urls["auth"],
            "AIDP_FETCHER_URL": urls["fetcher"],
            "AIDP_TRAINER_URL": urls["trainer"],
            "AIDP_PROVISIONER_URL": urls["provisioner"],
            "PYTHONUNBUFFERED": "1",
        }
        for name in SERVICES:
            self.processes[name] = []
            for replica in range(self.replicas):
                env = {
                    **common,
                    "AIDP_PORT": str(ports[name][replica]),
                    "AIDP_DATA_DIR": str(self.root / f"{name}-{replica}"),
                }
                self.processes[name].append(
                    ServiceProcess(
                        name,
                        replica,
                        ports[name][replica],
                        self.root / f"{name}-{replica}.log",
                        env,
                    )
                )

    @property
    def gateway_url(self) -> str:
        return self.processes["gateway"][0].url

    def all(self) -> list[ServiceProcess]:
        return [p for name in SERVICES for p in self.processes[name]]

    def start(self) -> None:
        for process in self.all():
            process.start()
        for process in self.all():
            process.wait_ready()

    def stop(self) -> None:
        for process in reversed(self.all()):
            process.stop()
        # Model servers and training processes run in sessions of their own: remove them.
        kill_processes_under(self.root)

    def logs(self) -> str:
        return "\n".join(f"===== {p.name}#{p.replica}\n{p.tail(60)}" for p in self.all())

    def diagnosis(self, amqp_url: str | None = None) -> str:
        """What to read when a run stalls: each service's warnings and errors (reconnect
        noise and health probes left out) and, on RabbitMQ, every queue's depth and
        consumers, which tells a stalled consumer from a stalled producer."""
        parts = []
        if amqp_url is not None:
            parts.append(_queue_states(amqp_url))
        for process in self.all():
            try:
                lines = process.log_path.read_text(errors="replace").splitlines()
            except OSError:
                lines = []
            notable = [
                line[:400]
                for line in lines
                if any(level in line for level in (" WARNING ", " ERROR ", " CRITICAL "))
                and not any(noise in line for noise in _RECONNECT_NOISE)
            ]
            parts.append(
                f"===== {process.name}#{process.replica} (alive={process.alive()})\n"
                + "\n".join(notable[-40:] + ["-- last lines --"] + lines[-15:])
            )
        return "\n".join(parts)


_RECONNECT_NOISE = ("Reconnecting after", "error when creating transport", "readyz")


def _queue_states(amqp_url: str) -> str:
    vhost = httpx.URL(amqp_url).path.lstrip("/")
    api, auth = management(amqp_url)
    try:
        queues = httpx.get(f"{api}/queues/{vhost}", auth=auth, timeout=10).json()
    except (httpx.HTTPError, ValueError) as exc:
        return f"===== queues: management API unavailable ({exc!r})"
    rows = [
        f"{q.get('name')}: ready={q.get('messages_ready')} "
        f"unacked={q.get('messages_unacknowledged')} consumers={q.get('consumers')} "
        f"state={q.get('state')}"
        for q in queues
        if isinstance(q, dict)
    ]
    return "===== queues\n" + "\n".join(rows)


@contextmanager
def running_cluster(root: Path, env: dict[str, str], *, replicas: int = 1) -> Iterator[Cluster]:
    root.mkdir(parents=True, exist_ok=True)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("AIDP_")}
    cluster = Cluster(root=root, env={**base_env, **env}, replicas=replicas)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
