"""The ssh driver: the user's own hosts, listed in ``resources.hosts``.

Node ``i`` is ``hosts[i]``; a lost node is replaced by the first listed host no node of
the run uses or lost (``resources.hosts`` may list more hosts than ``nodes``).
``identity`` names a user secret in Vault holding a private key;
it is written 0600 into the run's private state dir for the run's lifetime only. Host keys
are pinned per user in ``known_hosts_dir/<user id>`` (trust on first use, then a changed
key is a clear failure, never silently accepted): the policy of :mod:`shared.nodes`.
"""

from __future__ import annotations

import shlex
import shutil
import uuid
from typing import Any, ClassVar

from services.provisioner.accelerators import (
    REMOTE_PROBE,
    missing_accelerator,
    remote_accelerators,
)
from services.provisioner.drivers.base import Capabilities, Node, NodeDriver, RunContext
from services.provisioner.drivers.sshcmd import (
    ansible_ssh_vars,
    classify_ssh_failure,
    probe,
    run_ssh,
)
from services.provisioner.settings import ProvisionerSettings
from shared.errors import ProviderError
from shared.nodes import SSH_FAILED, user_known_hosts, write_key
from shared.secrets import SecretStore
from shared.spec import HostSpec

__all__ = ["SshDriver"]


class SshDriver(NodeDriver):
    name: ClassVar[str] = "ssh"
    capabilities: ClassVar[Capabilities] = Capabilities(
        accelerators=frozenset({"cpu", "cuda", "xpu", "gaudi"}), max_nodes=64
    )

    def __init__(self, settings: ProvisionerSettings, *, secrets: SecretStore) -> None:
        self.settings = settings
        self.secrets = secrets

    async def check_request(self, ctx: RunContext) -> None:
        await super().check_request(ctx)
        hosts = ctx.spec.resources.hosts
        for host in hosts[: ctx.spec.resources.nodes]:
            if host.identity and ctx.owner_id is None:
                raise ProviderError("ssh identities need the run's owner")
            if host.identity and ctx.owner_id is not None:
                secret = self.secrets.get_user_secret(str(ctx.owner_id), host.identity)
                if secret is None:
                    raise ProviderError(
                        f"host {host.address}: identity secret {host.identity!r} is not among"
                        " your stored secrets (aidp secrets set NAME)",
                        code="identity_missing",
                    )

    def _known_hosts(self, owner_id: uuid.UUID | None) -> str:
        path = user_known_hosts(self.settings.resolved_known_hosts_dir(), owner_id)
        path.touch(mode=0o600, exist_ok=True)
        return str(path)

    async def create_node(self, ctx: RunContext, index: int) -> Node:
        return self._node(ctx, index, ctx.spec.resources.hosts[index], key=f"{index}")

    async def replace_node(self, ctx: RunContext, lost: Node, *, avoid: list[Node]) -> Node:
        """The first host of ``resources.hosts`` that no node of the run uses or lost."""
        taken = {(n.address, n.ssh_port) for n in avoid}
        for position, host in enumerate(ctx.spec.resources.hosts):
            if (host.address, host.port) not in taken:
                return self._node(ctx, lost.index, host, key=f"{lost.index}-h{position}")
        raise ProviderError(
            f"node {lost.name} ({lost.address}) was lost and no spare host is left in"
            f" resources.hosts ({len(ctx.spec.resources.hosts)} listed, all in use or lost):"
            " list more hosts than resources.nodes to let a run survive a lost host",
            code="no_spare_host",
        )

    def _node(self, ctx: RunContext, index: int, host: HostSpec, *, key: str) -> Node:
        identity_file = None
        if host.identity and ctx.owner_id is not None:
            secret = self.secrets.get_user_secret(str(ctx.owner_id), host.identity)
            if secret is None:
                raise ProviderError(f"identity secret {host.identity!r} disappeared")
            identity_file = str(write_key(ctx.state_dir / "keys" / key, secret.reveal()))
        root = self.settings.ssh_node_root
        return Node(
            name=f"ssh-{index}",
            index=index,
            provider=self.name,
            address=host.address,
            workdir=f"{root}/runs/{ctx.run_id}",
            env_root=f"{root}/envs",
            tools_dir=f"{root}/bin",
            accelerator=ctx.spec.resources.accelerator,
            ssh_user=host.user,
            ssh_port=host.port,
            identity_file=identity_file,
            known_hosts=self._known_hosts(ctx.owner_id),
        )

    async def check_node(self, ctx: RunContext, node: Node) -> Node:
        node = await probe(node, connect_timeout=self.settings.ssh_connect_timeout)
        wanted = ctx.spec.resources.accelerator
        if wanted != "cpu":  # asked of the host itself: nothing else knows what it has
            _, out, _ = await self.run(node, REMOTE_PROBE, timeout=30)
            where = f"ssh host {node.name} ({node.address})"
            problem = missing_accelerator(wanted, remote_accelerators(out), where)
            if problem is not None:
                raise ProviderError(problem, code="accelerator_unavailable")
        return node

    async def run(self, node: Node, script: str, *, timeout: float = 60) -> tuple[int, str, str]:
        return await run_ssh(
            node, script, timeout=timeout, connect_timeout=self.settings.ssh_connect_timeout
        )

    async def terminate_node(self, ctx: RunContext, node: Node) -> None:
        """Remove the run's workdir on the host (the host itself is the user's)."""
        rc, _, err = await self.run(node, f"rm -rf {shlex.quote(node.workdir)}", timeout=60)
        if rc == SSH_FAILED:
            # An unreachable host keeps a stale workdir; that must not block the release.
            await ctx.report("release", str(classify_ssh_failure(node, err)))

    async def release_run(self, ctx: RunContext) -> None:
        shutil.rmtree(ctx.state_dir / "keys", ignore_errors=True)

    def ansible_vars(self, node: Node) -> dict[str, Any]:
        values = ansible_ssh_vars(node, connect_timeout=self.settings.ssh_connect_timeout)
        if node.identity_file:
            values["ansible_ssh_private_key_file"] = node.identity_file
        return values
