"""The node driver contract: what every provider (local, ssh, idc, fake) implements.

A driver turns "run R needs node i" into a reachable machine, and gives it back. The
provisioner calls it from background jobs, never from an event handler, and may call any
method again after a crash; the rules below make that safe.

Error rules (all methods):

* raise :class:`shared.errors.TransientError` when trying again later can succeed (capacity,
  a rate limit that outlived the retries, the local node busy): the job waits
  ``retry_delay`` and calls the same method again;
* raise :class:`shared.errors.ProviderError` (``retryable`` as appropriate) for a definitive
  failure, with a message that names the node and quotes the provider's own words: it goes
  to the user verbatim in ``NodesFailed``;
* anything else is a bug and fails the run with its text.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from shared.events import NodeInfo
from shared.nodes import parse_jump
from shared.nodes.known_hosts import pinned_host_keys
from shared.spec import ProjectSpec

if TYPE_CHECKING:
    from services.provisioner.cloud_access import Billing

__all__ = ["Capabilities", "Node", "NodeDriver", "Progress", "RunContext"]

#: ``progress(stage, message)``: the driver's progress for the user (ProvisioningProgress).
Progress = Callable[[str, str], Awaitable[None]]


@dataclass(frozen=True)
class Capabilities:
    """What a driver can do; the service refuses specs outside it before creating anything."""

    accelerators: frozenset[str]
    max_nodes: int
    billed: bool = False  # nodes cost money: price limits and the reaper apply
    remote: bool = True  # reached over SSH (else: this machine)


@dataclass(frozen=True)
class RunContext:
    """One run as the driver sees it. ``state_dir`` is private to the run on the controller
    (mode 0700): keys fetched from Vault and known_hosts files live there, never elsewhere."""

    run_id: uuid.UUID
    project_id: uuid.UUID
    owner_id: uuid.UUID | None
    spec: ProjectSpec
    state_dir: Path
    progress: Progress | None = None
    #: the account the run's resources were made with ('user' | 'platform'; None: not yet)
    credential_source: str | None = None

    async def report(self, stage: str, message: str) -> None:
        if self.progress is not None:
            await self.progress(stage, message)


@dataclass(frozen=True)
class Node:
    """A created node. ``identity_file``/``known_hosts`` are controller paths (never sent in
    events); ``env_root`` holds environments keyed by lock hash, ``workdir`` the run's files."""

    name: str
    index: int
    provider: str
    address: str
    workdir: str
    env_root: str
    tools_dir: str
    accelerator: str = "cpu"
    connection: Literal["local", "ssh"] = "ssh"
    ssh_user: str | None = None
    ssh_port: int = 22
    proxy: str | None = None  # user@host:port of a jump host
    identity_file: str | None = None
    known_hosts: str | None = None
    resource_id: str | None = None  # the provider's id (an IDC instance id)
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Node:
        return cls(**data)

    def info(self, *, python: str | None) -> NodeInfo:
        """The public connection details that go into ``NodesReady``/``NodesReplaced``,
        with the host keys pinned for the node (and its jump host) on first contact: the
        trainer checks the node against exactly those (:mod:`shared.nodes`). Reads the
        node's known_hosts file (small, local): call it off the event loop."""
        host_keys, proxy_host_keys = self.pinned_keys()
        return NodeInfo(
            name=self.name,
            address=self.address,
            ssh_user=self.ssh_user,
            ssh_port=self.ssh_port,
            proxy=self.proxy,
            workdir=self.workdir,
            accelerator=self.accelerator,
            provider=self.provider,
            python=python,
            host_keys=host_keys,
            proxy_host_keys=proxy_host_keys,
        )

    def pinned_keys(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(the node's, its jump host's) host keys pinned in its known_hosts; both empty
        when the node is not reached over SSH or its key is not pinned (yet): the trainer
        then keeps its known_hosts file rule."""
        if self.connection != "ssh" or self.known_hosts is None:
            return (), ()
        keys = pinned_host_keys(self.known_hosts, self.address, self.ssh_port)
        if not keys or self.proxy is None:
            return keys, ()
        jump = parse_jump(self.proxy)
        return keys, pinned_host_keys(self.known_hosts, jump.host, jump.port)


class NodeDriver(ABC):
    """One provider of nodes. Instances are cheap; state lives in the provider and the DB."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    #: Environments are built on the platform's own machine: in the bubblewrap sandbox, as
    #: the builder uid (``envs/sandboxed_build.py``), never as the platform's user.
    builds_in_sandbox: ClassVar[bool] = False

    async def check_request(self, ctx: RunContext) -> None:
        """Refuse a run this driver cannot serve, before anything is created (accelerator,
        node count, price limit, credentials). Returns at once."""
        res = ctx.spec.resources
        caps = self.capabilities
        from shared.errors import ProviderError

        if res.accelerator not in caps.accelerators:
            raise ProviderError(
                f"provider {self.name} offers accelerators {sorted(caps.accelerators)},"
                f" not {res.accelerator!r}"
            )
        if res.nodes > caps.max_nodes:
            raise ProviderError(f"provider {self.name} runs at most {caps.max_nodes} node(s)")

    def billing(self, ctx: RunContext) -> Billing | None:
        """What the run will cost and on whose account (billed providers), read after
        ``check_request`` passed; None: nothing billed. Returns at once."""
        return None

    @abstractmethod
    async def create_node(self, ctx: RunContext, index: int) -> Node:
        """Create (or find) node ``index`` of the run and return it once reachable.

        Idempotent per ``(ctx.run_id, index)``: calling it again after a crash or a
        TransientError returns the same node instead of creating a second one. May take
        minutes (a cloud VM booting); it reports through ``ctx.report``. The node is not
        configured yet (Ansible does that next).
        """

    async def replace_node(self, ctx: RunContext, lost: Node, *, avoid: list[Node]) -> Node:
        """A node to take the place of ``lost`` (same index and name), once ``lost`` was
        terminated: by default the driver creates node ``lost.index`` again (a cloud driver
        makes a new instance). ``avoid``: the run's nodes in use and every node it lost
        (a driver choosing among fixed machines must pick none of them). Idempotent like
        :meth:`create_node`; raises ProviderError when there is nothing to replace it with."""
        return await self.create_node(ctx, lost.index)

    @abstractmethod
    async def check_node(self, ctx: RunContext, node: Node) -> Node:
        """Prove the node usable: reachable, host key as recorded, ``python3`` present, the
        run's workdir created. Returns the node with its paths made absolute. Raises
        ProviderError naming the node and the cause."""

    @abstractmethod
    async def run(self, node: Node, script: str, *, timeout: float = 60) -> tuple[int, str, str]:
        """Run a POSIX shell ``script`` on the node: (exit code, stdout, stderr)."""

    @abstractmethod
    async def terminate_node(self, ctx: RunContext, node: Node) -> None:
        """Give the node back (and delete the run's workdir on it). A node that is already
        gone is not an error. Idempotent."""

    async def release_run(self, ctx: RunContext) -> None:
        """Drop per-run provider resources (registered keys, ...) after every node is
        terminated. Idempotent; default: nothing."""
        return None

    async def reap(self, *, active_run_ids: Iterable[uuid.UUID]) -> list[str]:
        """Delete provider resources labelled for runs not in ``active_run_ids``; returns
        what was removed. Default: nothing to reap (the provider bills nothing)."""
        return []

    @abstractmethod
    def ansible_vars(self, node: Node) -> dict[str, Any]:
        """Inventory variables that let Ansible reach ``node`` (connection, user, key)."""
