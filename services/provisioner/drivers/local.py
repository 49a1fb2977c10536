"""The local driver (the embedded default): this machine is the one node.

Each run gets a workspace ``data_dir/workspaces/<run_id>``; environments live in the
shared env dir (``AIDP_ENV_DIR``) and are built in the bubblewrap sandbox as an
unprivileged builder uid (:mod:`services.provisioner.envs.sandboxed_build`). At most
``local_max_runs`` runs hold the node at once (nodes kept only to serve a deployment do not
count); another run waits (TransientError) until one is released.
"""

from __future__ import annotations

import shutil
import socket
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from services.provisioner.accelerators import detect_local_accelerators, missing_accelerator
from services.provisioner.drivers.base import Capabilities, Node, NodeDriver, RunContext
from services.provisioner.drivers.sshcmd import probe, run_local
from services.provisioner.settings import ProvisionerSettings
from shared.errors import ProviderError, TransientError

__all__ = ["LocalDriver"]


class LocalDriver(NodeDriver):
    name: ClassVar[str] = "local"
    capabilities: ClassVar[Capabilities] = Capabilities(
        accelerators=frozenset({"cpu", "cuda", "xpu", "gaudi"}), max_nodes=1, remote=False
    )
    builds_in_sandbox: ClassVar[bool] = True

    def __init__(
        self,
        settings: ProvisionerSettings,
        *,
        runs_holding_node: Callable[[], set[uuid.UUID]],
    ) -> None:
        self.settings = settings
        self._holding = runs_holding_node  # run ids whose local node exists (from the DB)

    def offered_accelerators(self) -> frozenset[str]:
        """What this machine offers: ``AIDP_LOCAL_ACCELERATORS``, else detected once."""
        declared = self.settings.local_accelerators
        if declared is not None:
            return frozenset({"cpu", *declared})
        return detect_local_accelerators()

    async def check_request(self, ctx: RunContext) -> None:
        """Also refuse an accelerator this machine lacks (``cuda`` on a CPU-only host)."""
        await super().check_request(ctx)
        wanted = ctx.spec.resources.accelerator
        problem = missing_accelerator(wanted, self.offered_accelerators(), "this machine")
        if problem is not None:
            raise ProviderError(problem, code="accelerator_unavailable")

    def _workspace(self, run_id: uuid.UUID) -> Path:
        return self.settings.workspaces_dir() / str(run_id)

    async def create_node(self, ctx: RunContext, index: int) -> Node:
        if not self.settings.local_provider_allowed():
            raise ProviderError(
                "provider local is disabled in distributed mode: runs would execute on the"
                " control plane's machine. Use provider ssh or idc, or have the operator set"
                " AIDP_ALLOW_LOCAL_PROVIDER=true (runs are sandboxed)",
                code="local_provider_disabled",
            )
        holding = self._holding() - {ctx.run_id}
        workspace = self._workspace(ctx.run_id)
        if not workspace.exists() and len(holding) >= self.settings.local_max_runs:
            raise TransientError(
                f"the local node runs {len(holding)} run(s), the limit"
                f" (AIDP_LOCAL_MAX_RUNS={self.settings.local_max_runs}); waiting for one to end"
            )
        workspace.mkdir(parents=True, exist_ok=True)
        env_root = self.settings.resolved_env_dir()
        return Node(
            name=f"local-{index}",
            index=index,
            provider=self.name,
            address=socket.gethostname(),
            workdir=str(workspace),
            env_root=str(env_root),
            tools_dir=str(env_root / ".tools"),
            accelerator=ctx.spec.resources.accelerator,
            connection="local",
        )

    async def check_node(self, ctx: RunContext, node: Node) -> Node:
        return await probe(node)

    async def run(self, node: Node, script: str, *, timeout: float = 60) -> tuple[int, str, str]:
        return await run_local(script, timeout=timeout)

    async def terminate_node(self, ctx: RunContext, node: Node) -> None:
        shutil.rmtree(self._workspace(ctx.run_id), ignore_errors=True)

    def ansible_vars(self, node: Node) -> dict[str, Any]:
        return {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
