"""What an idc instance is: the names, labels and request bodies the driver sends, the
wait for ``Ready``, and the :class:`~services.provisioner.drivers.base.Node` it reads from
the cloud's answer.

Node ``i`` of a run is the instance ``aidp-<run id 12 hex>-<i>`` labelled
``aidp-run=<run id>`` and ``aidp-managed=true`` (teardown and the reaper find instances by
these labels); the run's SSH key is registered as ``aidp-<run id>``. The cloud's answer is
not trusted: every value that reaches ssh or Ansible is checked
(:mod:`services.provisioner.drivers.nodevalues`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING, Any

from services.provisioner.drivers.base import Node, RunContext
from services.provisioner.drivers.nodevalues import check_host, check_proxy, check_user
from shared.errors import ProviderError

if TYPE_CHECKING:
    from services.provisioner.drivers.idc_api import IdcClient

__all__ = [
    "MANAGED_LABEL",
    "RUN_LABEL",
    "TF_INSTANCE_FIELDS",
    "USER_DATA",
    "create_body",
    "instance_name",
    "is_uuid",
    "key_name",
    "node_from_instance",
    "terraform_instance",
    "wait_ready",
]

#: Fields of each item of the Terraform module's ``instances`` output that the driver reads.
TF_INSTANCE_FIELDS = (
    "id", "name", "private_ip", "user_name", "proxy_user", "proxy_address", "proxy_port",
)  # fmt: skip

RUN_LABEL = "aidp-run"
MANAGED_LABEL = "aidp-managed"

USER_DATA = """#cloud-config
package_update: false
packages: [python3, python3-venv]
runcmd:
  - [sh, -c, "mkdir -p /opt/aidp && chmod 0777 /opt/aidp"]
"""


def instance_name(run_id: uuid.UUID, index: int) -> str:
    return f"aidp-{run_id.hex[:12]}-{index}"


def key_name(run_id: uuid.UUID) -> str:
    return f"aidp-{run_id}"


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def create_body(
    ctx: RunContext,
    index: int,
    ssh_key: str,
    *,
    region: str,
    instance_type: str,
    machine_image: str,
) -> dict[str, Any]:
    """The compute API's body creating node ``index`` of the run."""
    zone = f"{region}a"
    return {
        "metadata": {
            "name": instance_name(ctx.run_id, index),
            "labels": {
                RUN_LABEL: str(ctx.run_id),
                MANAGED_LABEL: "true",
                "aidp-project": str(ctx.project_id),
            },
        },
        "spec": {
            "availabilityZone": zone,
            "instanceType": instance_type,
            "machineImage": machine_image,
            "runStrategy": "RerunOnFailure",
            "sshPublicKeyNames": [ssh_key],
            "interfaces": [{"name": "eth0", "vNet": f"{zone}-default"}],
            "userData": USER_DATA,
        },
    }


def terraform_instance(item: dict[str, Any]) -> dict[str, Any]:
    """One item of the Terraform module's ``instances`` output (:data:`TF_INSTANCE_FIELDS`)
    in the shape of the compute API's Ready instance."""
    return {
        "metadata": {"resourceId": item["id"], "name": item["name"]},
        "status": {
            "phase": "Ready",
            "interfaces": [{"addresses": [item["private_ip"]]}],
            "userName": item["user_name"],
            "sshProxy": {
                "proxyUser": item["proxy_user"],
                "proxyAddress": item["proxy_address"],
                "proxyPort": item["proxy_port"],
            },
        },
    }


async def wait_ready(
    ctx: RunContext,
    api: IdcClient,
    instance: dict[str, Any],
    *,
    timeout: float,
    poll_interval: float,
) -> dict[str, Any]:
    """Poll ``instance`` until it is ``Ready`` (reporting each new phase); a ``Failed`` one
    is deleted and fails fast with the API's message, one not Ready within ``timeout``
    seconds is deleted and fails retryable."""
    resource_id = instance["metadata"]["resourceId"]
    name = instance["metadata"].get("name", resource_id)
    deadline = time.monotonic() + timeout
    last_phase = ""
    while True:
        status = instance.get("status") or {}
        phase = status.get("phase", "")
        if phase != last_phase:
            await ctx.report("nodes", f"{name}: {phase or 'submitted'}")
            last_phase = phase
        if phase == "Ready":
            return instance
        if phase == "Failed":
            message = status.get("message") or "no message"
            await api.delete_instance(resource_id)
            raise ProviderError(
                f"instance {name} failed to provision: {message}", code="instance_failed"
            )
        if time.monotonic() > deadline:
            await api.delete_instance(resource_id)
            raise ProviderError(
                f"instance {name} not Ready after {timeout:.0f} s"
                f" (last phase {phase!r}); deleted it",
                retryable=True,
            )
        await asyncio.sleep(poll_interval)
        found = await api.instance(resource_id)
        if found is None:
            raise ProviderError(f"instance {name} disappeared while provisioning")
        instance = found


def node_from_instance(
    ctx: RunContext,
    index: int,
    instance: dict[str, Any],
    identity: str,
    *,
    provider: str,
    node_root: str,
) -> Node:
    """Node ``index`` of the run, reached as the Ready ``instance`` says (checked strictly),
    with the run's private key ``identity``."""
    status = instance.get("status") or {}
    try:
        address = status["interfaces"][0]["addresses"][0]
    except (KeyError, IndexError) as exc:
        raise ProviderError(f"instance {instance['metadata']} is Ready without an IP") from exc
    # The cloud API's answers reach ssh and Ansible: each one is checked strictly.
    name = instance_name(ctx.run_id, index)
    address = check_host(address, what=f"instance {name} address")
    user = check_user(status.get("userName") or "ubuntu", what=f"instance {name} user")
    proxy = status.get("sshProxy") or {}
    jump = None
    if proxy.get("proxyAddress"):
        jump = check_proxy(
            proxy.get("proxyUser", "guest"),
            proxy["proxyAddress"],
            proxy.get("proxyPort", 22),
            what=f"instance {name} ssh proxy",
        )
    known_hosts = ctx.state_dir / "known_hosts"  # fresh VMs: pinned for this run only
    known_hosts.touch(mode=0o600, exist_ok=True)
    return Node(
        name=f"idc-{index}",
        index=index,
        provider=provider,
        address=address,
        workdir=f"{node_root}/runs/{ctx.run_id}",
        env_root=f"{node_root}/envs",
        tools_dir=f"{node_root}/bin",
        accelerator=ctx.spec.resources.accelerator,
        ssh_user=user,
        ssh_port=22,
        proxy=jump,
        identity_file=identity,
        known_hosts=str(known_hosts),
        resource_id=instance["metadata"]["resourceId"],
    )
