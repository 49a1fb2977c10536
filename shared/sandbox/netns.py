"""One network namespace per run, shared by the run's local nodes.

torchrun's rendezvous needs the ranks of one run to reach each other on loopback; nothing
else may be reached. A named namespace (``ip netns``) holding only ``lo`` gives exactly that:
each sandboxed process of the run enters it with ``nsenter --net=/run/netns/<name>``.
Processes that need no peers (model servers) get a fresh, empty namespace from bwrap.
"""

from __future__ import annotations

import hashlib
import os
import subprocess

from shared.sandbox.errors import SandboxError

__all__ = ["ensure_netns", "netns_name", "netns_path", "remove_netns"]

_NETNS_DIR = "/run/netns"


def netns_name(tenant: str) -> str:
    """A short, stable name for the tenant's namespace (``ip`` limits names' length)."""
    return "aidp-" + hashlib.sha256(tenant.encode()).hexdigest()[:16]


def netns_path(tenant: str) -> str:
    return os.path.join(_NETNS_DIR, netns_name(tenant))


def ensure_netns(tenant: str) -> str:
    """Create the tenant's namespace with ``lo`` up (idempotent); returns its path."""
    name, path = netns_name(tenant), netns_path(tenant)
    if not os.path.exists(path):
        done = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
        if done.returncode != 0 and "File exists" not in done.stderr:
            raise SandboxError(
                f"could not create the run's network namespace ({done.stderr.strip()});"
                " the sandbox needs iproute2 and root (apt-get install iproute2)"
            )
    done = subprocess.run(
        ["ip", "-n", name, "link", "set", "lo", "up"], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SandboxError(f"could not bring up loopback in {name}: {done.stderr.strip()}")
    return path


def remove_netns(tenant: str) -> None:
    """Delete the tenant's namespace (no error if it is gone)."""
    if os.path.exists(netns_path(tenant)):
        subprocess.run(["ip", "netns", "del", netns_name(tenant)], capture_output=True)
