"""Environment building: a lock per spec (resolved once), then the nodes configured with it.

:class:`EnvBuilder` is the interface the provisioner's jobs use; :class:`AnsibleEnvBuilder`
does it for real (uv on the controller, Ansible on the nodes). Fast path: when every node
already holds a finished environment for the lock hash (its marker file), Ansible is not
run at all, which is what makes a relaunch take well under two seconds.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.provisioner.drivers.base import Node, NodeDriver
from services.provisioner.envs.ansible import run_playbook
from services.provisioner.envs.lock import (
    EnvLockText,
    EnvRequest,
    ensure_wheelhouse,
    env_request,
    resolve_lock,
)
from services.provisioner.envs.sandboxed_build import BuildSandbox
from services.provisioner.settings import ProvisionerSettings
from shared.errors import ProviderError
from shared.spec import ProjectSpec

__all__ = ["AnsibleEnvBuilder", "EnvBuilder", "EnvProgress", "LockResult"]

EnvProgress = Callable[[str, str, float | None], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class LockResult:
    input_key: str
    lock_hash: str
    text: str


class EnvBuilder(ABC):
    """Builds environments; both methods are idempotent and may be called again after a crash."""

    @abstractmethod
    def input_key(self, spec: ProjectSpec) -> str:
        """The key of the spec's resolution input (same key ⇒ same lock)."""

    @abstractmethod
    async def resolve(self, spec: ProjectSpec) -> LockResult:
        """Resolve the spec's packages into a hash-pinned lock. ProviderError on failure.
        (The provisioner keeps the first lock per input key and does not ask again.)"""

    @abstractmethod
    async def configure(
        self,
        *,
        spec: ProjectSpec,
        lock: LockResult,
        nodes: list[Node],
        driver: NodeDriver,
        private_dir: Path,
        progress: EnvProgress,
        cancel: threading.Event,
    ) -> dict[str, Any]:
        """Make every node hold the lock's environment; returns the env description
        ``{lock_hash, python, python_version, torch_version, accelerator, framework}`` (and
        ``tensorflow_version``, ``keras_version`` for a TensorFlow env)."""


def marker_script(node: Node, lock_hash: str) -> str:
    env_dir = f"{node.env_root}/{lock_hash}"
    describe = json.dumps(
        {"lock_hash": lock_hash, "python": f"{env_dir}/venv/bin/python", "env_dir": env_dir}
    )
    marker = shlex.quote(f"{env_dir}/.aidp-ready")
    python = shlex.quote(f"{env_dir}/venv/bin/python")
    return (
        f"test -f {marker} && ! test -h {marker} && test -x {python} || exit 0\n"
        f"printf '%s\\n' {shlex.quote(describe)} > {shlex.quote(node.workdir + '/aidp-node.json')}"
        f" && cat {marker}"
    )


async def read_marker(driver: NodeDriver, node: Node, lock_hash: str) -> dict[str, Any] | None:
    """The node's finished environment for ``lock_hash`` (its marker), or None."""
    rc, out, _ = await driver.run(node, marker_script(node, lock_hash), timeout=60)
    if rc != 0 or not out.strip():
        return None
    try:
        data = json.loads(out.strip().splitlines()[-1])
    except ValueError:
        return None
    return data if data.get("lock_hash") == lock_hash else None


class AnsibleEnvBuilder(EnvBuilder):
    """uv resolves on the controller; Ansible's roles build the env on each node."""

    def __init__(self, settings: ProvisionerSettings) -> None:
        self.settings = settings
        self.build_sandbox = BuildSandbox(settings)

    def _request(self, spec: ProjectSpec) -> EnvRequest:
        return env_request(spec, self.settings)

    def input_key(self, spec: ProjectSpec) -> str:
        return self._request(spec).key()

    async def resolve(self, spec: ProjectSpec) -> LockResult:
        req = self._request(spec)
        text = await resolve_lock(req, self.settings)
        return LockResult(input_key=req.key(), lock_hash=text.hash, text=text.text)

    def _package_source(self, driver: NodeDriver) -> str:
        if driver.name == "ssh" and self.settings.ssh_package_source:
            return self.settings.ssh_package_source
        return "index" if not driver.capabilities.remote else self.settings.package_source

    async def configure(
        self,
        *,
        spec: ProjectSpec,
        lock: LockResult,
        nodes: list[Node],
        driver: NodeDriver,
        private_dir: Path,
        progress: EnvProgress,
        cancel: threading.Event,
    ) -> dict[str, Any]:
        markers = await asyncio.gather(*(read_marker(driver, n, lock.lock_hash) for n in nodes))
        if all(markers) and not self.settings.always_run_playbook:
            await progress("configure", f"environment {lock.lock_hash[:12]} already built", 100)
            return _env(markers[0], spec)
        req = self._request(spec)
        private_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_file = private_dir / "requirements.lock"
        lock_file.write_text(lock.text)
        source = self._package_source(driver)
        wheelhouse = ""
        if source == "push":
            await progress("wheelhouse", "downloading the locked wheels once", None)
            wheelhouse = str(await ensure_wheelhouse(EnvLockText(lock.text), req, self.settings))
        sandboxed: dict[str, dict[str, Any]] = {}
        if driver.builds_in_sandbox:  # this machine: build as the builder uid, sandboxed
            for node in nodes:
                sandboxed[node.name] = await asyncio.to_thread(
                    self.build_sandbox.host_vars,
                    node,
                    lock_hash=lock.lock_hash,
                    python_version=spec.environment.python,
                    find_links=req.find_links,
                    private_dir=private_dir,
                )

        def host_vars(node: Node) -> dict[str, Any]:
            return {
                "aidp_env_root": node.env_root,
                "aidp_tools_dir": node.tools_dir,
                "aidp_workdir": node.workdir,
                "aidp_lock_hash": lock.lock_hash,
                "aidp_lock_src": str(lock_file),
                "aidp_python_version": spec.environment.python,
                "aidp_python_downloads": self.settings.python_downloads,
                "aidp_accelerator": spec.resources.accelerator,
                "aidp_framework": spec.environment.framework,
                "aidp_uv_src": self.settings.uv_binary,
                "aidp_package_source": source,
                "aidp_allow_source_builds": self.settings.allow_source_builds,
                "aidp_wheelhouse_src": wheelhouse,
                "aidp_find_links": list(req.find_links),
                "aidp_index_url": req.index_url or "",
                "aidp_extra_index_urls": list(req.extra_index_urls),
                "aidp_system_packages": (
                    self.settings.node_system_packages if driver.capabilities.remote else []
                ),
                **sandboxed.get(node.name, {}),
            }

        await run_playbook(
            nodes=nodes,
            driver=driver,
            host_vars=host_vars,
            private_dir=private_dir / "ansible",
            settings=self.settings,
            progress=progress,
            cancel=cancel,
        )
        markers = await asyncio.gather(*(read_marker(driver, n, lock.lock_hash) for n in nodes))
        missing = [n.name for n, m in zip(nodes, markers, strict=True) if not m]
        if missing:
            raise ProviderError(
                f"the environment was not finished on {', '.join(missing)} (no marker)"
            )
        return _env(markers[0], spec)


def _env(marker: dict[str, Any] | None, spec: ProjectSpec) -> dict[str, Any]:
    marker = marker or {}
    return {
        "lock_hash": marker.get("lock_hash", ""),
        "python": marker.get("python", ""),
        "python_version": marker.get("python_version", spec.environment.python),
        "torch_version": marker.get("torch_version", ""),
        "accelerator": spec.resources.accelerator,
        "framework": marker.get("framework", "pytorch"),
        **{k: marker[k] for k in ("tensorflow_version", "keras_version") if marker.get(k)},
    }
