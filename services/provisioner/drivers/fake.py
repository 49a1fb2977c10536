"""A fake driver for unit tests: nodes are directories on this machine, kept in a registry
the test can inspect (what exists, what was created twice, what was terminated).

Failure injection: ``fail_create`` (index → ProviderError message), ``transient_creates``
(how many TransientErrors ``create_node`` raises first), ``fail_check`` (index → message).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from services.provisioner.drivers.base import Capabilities, Node, NodeDriver, RunContext
from services.provisioner.drivers.sshcmd import run_local
from shared.errors import ProviderError, TransientError

__all__ = ["FakeCloud", "FakeDriver"]


@dataclass
class FakeCloud:
    """The fake provider's state, shared by every FakeDriver built on it."""

    root: Path
    nodes: dict[tuple[uuid.UUID, int], Node] = field(default_factory=dict)
    created: list[tuple[uuid.UUID, int]] = field(default_factory=list)
    terminated: list[tuple[uuid.UUID, int]] = field(default_factory=list)
    fail_create: dict[int, str] = field(default_factory=dict)
    fail_check: dict[int, str] = field(default_factory=dict)
    transient_creates: int = 0
    billed: bool = True


class FakeDriver(NodeDriver):
    name: ClassVar[str] = "fake"
    capabilities: ClassVar[Capabilities] = Capabilities(
        accelerators=frozenset({"cpu", "cuda"}), max_nodes=8, billed=True, remote=False
    )

    def __init__(self, cloud: FakeCloud, *, provider: str = "fake") -> None:
        self.cloud = cloud
        self.provider = provider

    async def create_node(self, ctx: RunContext, index: int) -> Node:
        key = (ctx.run_id, index)
        if key in self.cloud.nodes:
            return self.cloud.nodes[key]
        if self.cloud.transient_creates > 0:
            self.cloud.transient_creates -= 1
            raise TransientError("fake capacity exhausted, try again")
        if index in self.cloud.fail_create:
            raise ProviderError(self.cloud.fail_create[index], code="quota")
        workdir = self.cloud.root / "nodes" / f"{ctx.run_id}-{index}"
        node = Node(
            name=f"{self.provider}-{index}",
            index=index,
            provider=self.provider,
            address="127.0.0.1",
            workdir=str(workdir),
            env_root=str(self.cloud.root / "envs"),
            tools_dir=str(self.cloud.root / "tools"),
            accelerator=ctx.spec.resources.accelerator,
            connection="local",
            resource_id=f"fake-{ctx.run_id}-{index}",
        )
        self.cloud.nodes[key] = node
        self.cloud.created.append(key)
        return node

    async def check_node(self, ctx: RunContext, node: Node) -> Node:
        if node.index in self.cloud.fail_check:
            raise ProviderError(f"node {node.name}: {self.cloud.fail_check[node.index]}")
        Path(node.workdir).mkdir(parents=True, exist_ok=True)
        return node

    async def run(self, node: Node, script: str, *, timeout: float = 60) -> tuple[int, str, str]:
        return await run_local(script, timeout=timeout)

    async def terminate_node(self, ctx: RunContext, node: Node) -> None:
        key = (ctx.run_id, node.index)
        if self.cloud.nodes.pop(key, None) is not None:
            self.cloud.terminated.append(key)
        shutil.rmtree(node.workdir, ignore_errors=True)

    async def reap(self, *, active_run_ids: Iterable[uuid.UUID]) -> list[str]:
        active = set(active_run_ids)
        gone = [key for key in self.cloud.nodes if key[0] not in active]
        for key in gone:
            node = self.cloud.nodes.pop(key)
            self.cloud.terminated.append(key)
            shutil.rmtree(node.workdir, ignore_errors=True)
        return [f"fake-{run}-{index}" for run, index in gone]

    def ansible_vars(self, node: Node) -> dict[str, Any]:
        return {"ansible_connection": "local"}
