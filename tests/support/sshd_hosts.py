"""Real SSH hosts for tests: one sshd per network namespace, joined to this machine by a
veth pair. Needs root, ``ip`` (iproute2) and ``/usr/sbin/sshd`` (openssh-server).

Each host has its own generated host key and an ``authorized_keys`` file the test controls
(the IDC test server appends registered keys to it, like cloud-init would). Hosts share this
machine's filesystem; only the network is separate, so ``stop()``-ing a host's sshd makes it
unreachable ("Connection refused").
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "SshHost",
    "available",
    "clear_stale_shell_locks",
    "generate_key",
    "private_link",
    "sshd_hosts",
]

SSHD = "/usr/sbin/sshd"


def available() -> str | None:
    """None when sshd hosts can be made here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "sshd hosts need root (network namespaces)"
    if not Path(SSHD).exists():
        return "sshd missing: apt-get install -y openssh-server"
    if shutil.which("ip") is None:
        return "iproute2 missing"
    return None


def _running_rehash() -> bool:
    """Whether a ``pyenv rehash`` runs (and is not stopped) anywhere on this machine."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if b"pyenv-rehash" in cmdline and state not in ("T", "t", "Z"):
            return True
    return False


def clear_stale_shell_locks() -> None:
    """Drop a pyenv rehash lock that no live rehash holds.

    The hosts share this machine's accounts, so each SSH command runs root's ``~/.bashrc``;
    where that runs ``pyenv init`` (as on these CI machines) every command does a ``pyenv
    rehash`` under the lock file ``~/.pyenv/shims/.pyenv-shim``. A test that kills or
    freezes a host's processes can leave the lock behind, and every later SSH command (and
    shell) on the machine then waits for it forever. Call after killing or freezing hosts.
    """
    lock = Path.home() / ".pyenv" / "shims" / ".pyenv-shim"
    if lock.exists() and not _running_rehash():
        lock.unlink(missing_ok=True)


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


def generate_key(path: Path, kind: str = "ed25519") -> tuple[str, str]:
    """A new key pair at ``path``: (private key text, public key line)."""
    _run("ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "aidp-test", "-f", str(path))
    return path.read_text(), path.with_suffix(".pub").read_text().strip()


@dataclass
class SshHost:
    name: str
    netns: str
    address: str
    port: int
    root: Path
    host_key_pub: str
    authorized_keys: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def authorize(self, public_key: str) -> None:
        with self.authorized_keys.open("a") as handle:
            handle.write(public_key.strip() + "\n")

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        log = (self.root / "sshd.log").open("ab")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, SSHD, "-D", "-e",
             "-f", str(self.root / "sshd_config")],
            stdout=log,
            stderr=log,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self._port_open():
                return
            time.sleep(0.1)
        raise RuntimeError(f"sshd on {self.address} did not start: {self.log()}")

    def _port_open(self) -> bool:
        try:
            with socket.create_connection((self.address, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        path = self.root / "sshd.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


_CONFIG = """\
ListenAddress 0.0.0.0
Port {port}
HostKey {host_key}
PidFile {root}/sshd.pid
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
Subsystem sftp internal-sftp
"""


def _make_host(index: int, tag: str, subnet: int, base: Path) -> SshHost:
    netns = f"aidp-{tag}-{index}"
    outer, inner = f"av{tag}{index}o", f"av{tag}{index}i"
    host_ip, node_ip = f"10.{subnet}.{index}.1", f"10.{subnet}.{index}.2"
    root = base / f"host{index}"
    root.mkdir(parents=True)
    _run("ip", "netns", "add", netns)
    _run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
    _run("ip", "link", "set", inner, "netns", netns)
    _run("ip", "addr", "add", f"{host_ip}/24", "dev", outer)
    _run("ip", "link", "set", outer, "up")
    _run("ip", "netns", "exec", netns, "ip", "addr", "add", f"{node_ip}/24", "dev", inner)
    _run("ip", "netns", "exec", netns, "ip", "link", "set", inner, "up")
    _run("ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up")
    _run("ip", "netns", "exec", netns, "ip", "route", "add", "default", "via", host_ip)
    _, host_pub = generate_key(root / "ssh_host_ed25519_key")
    authorized = root / "authorized_keys"
    authorized.touch(mode=0o600)
    config = _CONFIG.format(
        address=node_ip,
        port=22,
        host_key=root / "ssh_host_ed25519_key",
        root=root,
        authorized_keys=authorized,
    )
    (root / "sshd_config").write_text(config)
    return SshHost(
        name=f"host{index}",
        netns=netns,
        address=node_ip,
        port=22,
        root=root,
        host_key_pub=host_pub,
        authorized_keys=authorized,
    )


def private_link(jump: SshHost, node: SshHost) -> str:
    """Join two hosts' namespaces directly (a private network only ``jump`` can reach, like
    a cloud VM's private IP behind its SSH jump host); returns ``node``'s private address."""
    tag = node.netns.rsplit("-", 2)[-2]
    a, b = f"ap{tag}{jump.name[-1]}{node.name[-1]}a", f"ap{tag}{jump.name[-1]}{node.name[-1]}b"
    subnet = f"172.31.{int(jump.name[-1]) * 16 + int(node.name[-1])}"
    _run("ip", "link", "add", a, "netns", jump.netns, "type", "veth", "peer", "name", b,
         "netns", node.netns)  # fmt: skip
    _run("ip", "netns", "exec", jump.netns, "ip", "addr", "add", f"{subnet}.1/24", "dev", a)
    _run("ip", "netns", "exec", node.netns, "ip", "addr", "add", f"{subnet}.2/24", "dev", b)
    _run("ip", "netns", "exec", jump.netns, "ip", "link", "set", a, "up")
    _run("ip", "netns", "exec", node.netns, "ip", "link", "set", b, "up")
    return f"{subnet}.2"


def _free_subnet() -> int:
    """A ``10.<n>.0.0/16`` no interface of this machine uses (tests of other sessions may
    hold sshd hosts at the same time: a shared subnet routes their packets astray)."""
    used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    for _ in range(100):
        subnet = 200 + secrets.randbelow(50)
        if f" 10.{subnet}." not in used:
            return subnet
    raise RuntimeError("no free 10.200-249 subnet for sshd hosts")


@contextmanager
def sshd_hosts(count: int, *, start: bool = True) -> Iterator[list[SshHost]]:
    """``count`` sshd hosts in their own network namespaces; all removed on exit."""
    reason = available()
    if reason:
        raise RuntimeError(reason)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    tag = secrets.token_hex(2)
    subnet = _free_subnet()
    base = Path(tempfile.mkdtemp(prefix="aidp-sshd-"))
    hosts: list[SshHost] = []
    clear_stale_shell_locks()
    try:
        for index in range(count):
            hosts.append(_make_host(index, tag, subnet, base))
            if start:
                hosts[-1].start()
        yield hosts
    finally:
        for host in hosts:
            host.stop()
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True)
        for index in range(count):
            subprocess.run(["ip", "link", "del", f"av{tag}{index}o"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
        clear_stale_shell_locks()
