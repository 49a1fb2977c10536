"""Which executor a node gets: local (sandboxed, provider ``local``) or SSH, with the
trainer's settings (SSH keys, known hosts, node timeout, the run's sandbox).

Host keys (one policy with the provisioner, :mod:`shared.nodes`): a node announced with
its host keys (``NodeInfo.host_keys``: the keys the provisioner pinned on first contact,
every ssh and idc node of a current provisioner) is checked against exactly those, and its
jump host against ``NodeInfo.proxy_host_keys``, wherever the trainer runs. A node announced
without keys (an older provisioner) keeps the file rule: ``AIDP_TRAINER_KNOWN_HOSTS``
(deprecated) names one file for every node; else a user's own host (provider ``ssh``) is
checked against the run owner's known_hosts (:func:`shared.nodes.user_known_hosts`), other
providers' nodes against ``~/.ssh/known_hosts``."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from services.trainer.nodes.base import NodeExecutor
from services.trainer.nodes.local import LocalExecutor, LocalSandbox, host_name, sandboxes_for
from services.trainer.nodes.ssh import SSHExecutor
from services.trainer.settings import TrainerSettings
from shared.errors import ProviderError
from shared.events import NodeInfo
from shared.nodes import user_known_hosts

__all__ = ["USER_HOSTS", "executor_for", "node_executor", "pinned_known_hosts"]

#: the provider of users' own hosts, whose keys the provisioner pins per user
USER_HOSTS = "ssh"


def executor_for(
    node: NodeInfo,
    *,
    ssh_keys: Sequence[str] = (),
    known_hosts: str | None = None,
    accept_unknown_host_keys: bool = False,
    sandbox: LocalSandbox | None = None,
    node_timeout: float = 30,
) -> NodeExecutor:
    """The executor for a node: local for provider ``local``, SSH otherwise."""
    if node.provider == "local" and node.ssh_user is None:
        return LocalExecutor(node, sandbox=sandbox)
    return SSHExecutor(
        node,
        client_keys=ssh_keys,
        known_hosts=known_hosts,
        accept_unknown_host_keys=accept_unknown_host_keys,
        connect_timeout=min(15.0, node_timeout),
        node_timeout=node_timeout,
    )


def pinned_known_hosts(
    node: NodeInfo, settings: TrainerSettings, owner: uuid.UUID | str | None
) -> str | None:
    """The known_hosts file the node's host key is checked against (None: ssh's default,
    ``~/.ssh/known_hosts``, or, for a node announced with its keys, no file: those keys):
    see the module docstring."""
    if node.host_keys:
        return None
    if settings.trainer_known_hosts is not None:
        return str(settings.trainer_known_hosts)
    if node.provider == USER_HOSTS:
        return str(user_known_hosts(settings.resolved_known_hosts_dir(), owner))
    return None


def node_executor(
    node: NodeInfo | Mapping[str, Any],
    settings: TrainerSettings,
    *,
    tenant: uuid.UUID | str,
    owner: uuid.UUID | str | None = None,
    shared_network: bool = False,
    peers: Sequence[str] = (),
) -> NodeExecutor:
    """:func:`executor_for` with the trainer's SSH settings (keys, the host keys pinned for
    the run's ``owner``, opt-in) and, for a local node, the sandbox of run ``tenant``
    (``shared_network``: the run's ranks share one network namespace)."""
    info = node if isinstance(node, NodeInfo) else NodeInfo.model_validate(node)
    if info.provider == "local" and info.ssh_user is None and not settings.local_provider_allowed():
        raise ProviderError(
            "provider local is disabled in distributed mode (AIDP_ALLOW_LOCAL_PROVIDER=true"
            " allows it)"
        )
    return executor_for(
        info,
        ssh_keys=[str(p) for p in settings.trainer_ssh_keys],
        known_hosts=pinned_known_hosts(info, settings, owner),
        accept_unknown_host_keys=settings.trainer_accept_unknown_host_keys,
        node_timeout=settings.trainer_node_timeout_seconds,
        sandbox=LocalSandbox(
            sandboxes_for(settings.sandbox_policy()),
            tenant=str(tenant),
            shared_network=shared_network,
            peers=tuple(host_name(p) for p in peers),
        ),
    )
