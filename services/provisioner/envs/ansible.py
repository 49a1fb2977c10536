"""Run ``deploy/ansible/provision.yml`` on a run's nodes through ansible-runner.

Ansible's task events stream out through ``progress`` (→ ``ProvisioningProgress``). A
failed or unreachable host becomes one :class:`ProviderError` naming the host and the task
and quoting the tool's own output (pip's/uv's message for a misspelt package). The
inventory hands every value to Ansible as unsafe data (:mod:`.inventory`): nothing a spec or
a node supplied is ever rendered as a template on the controller.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from services.provisioner.drivers.base import Node, NodeDriver
from services.provisioner.envs.inventory import build_inventory, write_inventory
from services.provisioner.settings import ProvisionerSettings
from shared.errors import ProviderError

__all__ = ["AnsibleProgress", "run_playbook"]

AnsibleProgress = Callable[[str, str, float | None], Coroutine[Any, Any, None]]

_TASKS_PER_HOST = 14  # tasks in provision.yml; only for a rough percentage


def _failure_text(res: dict[str, Any]) -> str:
    items = [r for r in res.get("results") or [] if isinstance(r, dict)]
    failed = [r for r in items if r.get("failed") or r.get("unreachable")]
    if failed:
        texts = dict.fromkeys(_failure_text(r) for r in failed)  # unique, in order
        return "\n".join(texts)[-4000:]
    parts: list[str] = []
    msg = res.get("msg")
    if msg and msg not in ("non-zero return code",):
        parts.append(str(msg).strip())
    for key in ("stderr", "stdout", "module_stderr"):
        value = str(res.get(key) or "").strip()
        if value and value not in parts:
            parts.append(value)
    if not parts and msg:
        parts.append(str(msg))
    text = "\n".join(parts)
    return text[-4000:]


def _ansible_env(private_dir: Path, control_dir: str) -> dict[str, str]:
    bindir = str(Path(sys.executable).parent)
    return {
        "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
        "ANSIBLE_CONFIG": "",  # set below to the project's ansible.cfg
        # ssh's ControlPath must stay under 108 bytes: a short directory of its own.
        "ANSIBLE_SSH_CONTROL_PATH_DIR": control_dir,
        "ANSIBLE_LOCAL_TEMP": str(private_dir / "tmp"),
        "ANSIBLE_NOCOLOR": "1",
        # ansible-runner turns host key checking off by default; ours is on (accept-new
        # into the user's known_hosts, a changed key fails).
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
    }


async def run_playbook(
    *,
    nodes: list[Node],
    driver: NodeDriver,
    host_vars: Callable[[Node], dict[str, Any]],
    private_dir: Path,
    settings: ProvisionerSettings,
    progress: AnsibleProgress,
    cancel: threading.Event,
) -> None:
    """Configure ``nodes`` (blocking work runs in a thread); raises ProviderError on failure."""
    import ansible_runner  # lazy: heavy import, only where a playbook runs

    if private_dir.exists():
        shutil.rmtree(private_dir)
    private_dir.mkdir(parents=True, mode=0o700)
    (private_dir / "tmp").mkdir()
    control_dir = tempfile.mkdtemp(prefix="aidp-cp-")
    loop = asyncio.get_running_loop()
    failures: list[str] = []
    started = 0
    total = _TASKS_PER_HOST * max(len(nodes), 1)

    def on_event(event: dict[str, Any]) -> bool:
        nonlocal started
        kind = event.get("event", "")
        data = event.get("event_data", {})
        host, task = data.get("host", ""), data.get("task", "")
        if kind == "runner_on_start":
            started += 1
            pct = min(99.0, 100.0 * started / total)
            message = f"{host}: {task}"
            asyncio.run_coroutine_threadsafe(progress("configure", message, pct), loop)
        elif kind in ("runner_on_failed", "runner_on_unreachable") and not data.get(
            "ignore_errors"
        ):
            what = "unreachable" if kind == "runner_on_unreachable" else "failed"
            failures.append(f"{host}: task '{task}' {what}: {_failure_text(data.get('res', {}))}")
        return kind not in ("verbose",)

    envvars = _ansible_env(private_dir, control_dir)
    envvars["ANSIBLE_CONFIG"] = str(settings.ansible_dir / "ansible.cfg")
    envvars["ANSIBLE_ROLES_PATH"] = str(settings.ansible_dir / "roles")
    # Every value is unsafe data to Ansible (never rendered): see envs/inventory.py.
    inventory = write_inventory(
        private_dir / "inventory.yml", build_inventory(nodes, driver, host_vars)
    )

    def _run() -> Any:
        return ansible_runner.run(
            private_data_dir=str(private_dir),
            project_dir=str(settings.ansible_dir),
            playbook="provision.yml",
            inventory=str(inventory),
            envvars=envvars,
            event_handler=on_event,
            cancel_callback=cancel.is_set,
            quiet=True,
            forks=max(len(nodes), 1),
            timeout=3600,
        )

    try:
        result = await asyncio.to_thread(_run)
    finally:
        shutil.rmtree(control_dir, ignore_errors=True)
    if cancel.is_set():
        raise asyncio.CancelledError
    if failures:
        raise ProviderError("; ".join(failures), code="configure_failed")
    if result.rc != 0 or result.status != "successful":
        tail = ""
        try:
            tail = result.stdout.read()[-2000:]
        except Exception:  # pragma: no cover - runner without captured stdout
            tail = ""
        raise ProviderError(
            f"ansible-playbook ended {result.status} (rc {result.rc}): {tail.strip()}",
            code="configure_failed",
        )
