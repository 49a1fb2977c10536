"""The idc driver: Intel Tiber AI Cloud VMs over the compute REST API (or Terraform).

Per run: an SSH key pair generated on the controller and registered as ``aidp-<run id>``;
node ``i`` is the instance ``aidp-<run id 12 hex>-<i>`` labelled ``aidp-run=<run id>`` and
``aidp-managed=true``, booted with cloud-init user data, polled until ``Ready`` (``Failed``
fails fast with the API's message, after deleting the instance) and reached through the
instance's ``sshProxy`` jump host. Teardown deletes the run's instances by label, so an
instance created just before a crash is found too; the reaper deletes instances labelled for
runs that have ended.

Credentials: the owner's Vault secrets ``ITAC_CLIENT_ID``, ``ITAC_CLIENT_SECRET`` and
``ITAC_CLOUDACCOUNT`` when all three are stored, else the platform's settings
(``ITAC_*`` / ``AIDP_IDC_*``) or its platform secret ``idc`` — the platform's only for
owners the operator allows, within the platform's price caps
(:mod:`services.provisioner.cloud_access`). Deleting a run's resources always works with
the account that created them.

Instance names, labels, request bodies, the wait for ``Ready`` and the reading of an
answer into a node are in :mod:`services.provisioner.drivers.idc_instances`.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import stamina

from services.provisioner.accelerators import idc_instance_accelerators, missing_accelerator
from services.provisioner.cloud_access import Billing, platform_credentials_refused
from services.provisioner.drivers.base import Capabilities, Node, NodeDriver, RunContext
from services.provisioner.drivers.idc_api import IdcClient, IdcCredentials
from services.provisioner.drivers.idc_instances import (
    MANAGED_LABEL,
    RUN_LABEL,
    TF_INSTANCE_FIELDS,
    USER_DATA,
    create_body,
    instance_name,
    is_uuid,
    key_name,
    node_from_instance,
    terraform_instance,
    wait_ready,
)
from services.provisioner.drivers.sshcmd import ansible_ssh_vars, probe, run_ssh
from services.provisioner.drivers.terraform import TerraformRun, terraform_binary
from services.provisioner.settings import ProvisionerSettings
from shared.db import run_sync
from shared.errors import ProviderError
from shared.secrets import SecretStore

__all__ = ["TF_INSTANCE_FIELDS", "IdcDriver", "instance_name", "key_name"]


class IdcDriver(NodeDriver):
    name: ClassVar[str] = "idc"
    capabilities: ClassVar[Capabilities] = Capabilities(
        accelerators=frozenset({"cpu", "gaudi", "xpu"}), max_nodes=16, billed=True
    )

    def __init__(
        self,
        settings: ProvisionerSettings,
        *,
        secrets: SecretStore,
        owner_id: uuid.UUID | None,
        platform_allowed: Callable[[uuid.UUID | None], bool] = lambda _owner: False,
    ) -> None:
        self.settings = settings
        self.secrets = secrets
        self.owner_id = owner_id
        self.platform_allowed = platform_allowed

    # -- credentials and client --------------------------------------------------------------

    def credentials(self, *, creating: bool = False, source: str | None = None) -> IdcCredentials:
        """The owner's stored credentials, else the platform's; ProviderError if neither.

        ``creating``: for new resources, the platform's only if the owner is allowed them.
        ``source`` ('user' | 'platform'): the account a run's resources were made with (to
        delete them with the same one)."""
        if self.owner_id is not None and source != "platform":
            names = ("ITAC_CLIENT_ID", "ITAC_CLIENT_SECRET", "ITAC_CLOUDACCOUNT")
            values = [self.secrets.get_user_secret(str(self.owner_id), n) for n in names]
            if all(v is not None for v in values):
                cid, secret, account = (v.reveal() for v in values if v is not None)
                return IdcCredentials(cid, secret, account, source="user")
        if creating and not self.platform_allowed(self.owner_id):
            raise platform_credentials_refused()
        s = self.settings
        if s.idc_client_id and s.idc_client_secret and s.idc_cloudaccount:
            return IdcCredentials(
                s.idc_client_id,
                s.idc_client_secret.get_secret_value(),
                s.idc_cloudaccount,
                source="platform",
            )
        stored = self.secrets.get_platform_secret("idc") or {}
        if all(stored.get(k) for k in ("client_id", "client_secret", "cloudaccount")):
            return IdcCredentials(
                stored["client_id"], stored["client_secret"], stored["cloudaccount"], "platform"
            )
        raise ProviderError(
            "no Intel Tiber AI Cloud credentials: store ITAC_CLIENT_ID, ITAC_CLIENT_SECRET and"
            " ITAC_CLOUDACCOUNT as secrets (aidp secrets set ...), or configure the platform's",
            code="idc_credentials_missing",
        )

    def client(self, *, creating: bool = False, source: str | None = None) -> IdcClient:
        return IdcClient(
            api_url=self.settings.idc_api_url,
            token_url=self.settings.idc_token_url,
            credentials=self.credentials(creating=creating, source=source),
            max_retries=self.settings.idc_max_retries,
            backoff=self.settings.idc_backoff,
        )

    def use_terraform(self) -> str | None:
        """The terraform/tofu binary to use, or None for direct API calls."""
        return terraform_binary() if self.settings.idc_use_terraform else None

    # -- contract ------------------------------------------------------------------------------

    def _instance_type(self, ctx: RunContext) -> str:
        """The run's instance type: the first listed (the service narrows the spec to the
        choice in use, :meth:`shared.spec.ResourcesSpec.narrowed`), else the default."""
        types = ctx.spec.resources.instance_types()
        return types[0] if types else self.settings.idc_default_instance_type

    def _price(self, ctx: RunContext) -> float | None:
        """USD/hour of all the run's nodes, None when the type's price is unknown."""
        price = self.settings.idc_prices.get(self._instance_type(ctx))
        return None if price is None else price * ctx.spec.resources.nodes

    async def check_request(self, ctx: RunContext) -> None:
        """Capabilities, credentials (the platform's only for allowed owners), and the run's
        price against min(spec's max_hourly_usd, the platform's per-run cap when the
        platform pays). The per-user cap is checked when the service reserves the run."""
        await super().check_request(ctx)
        itype = self._instance_type(ctx)
        problem = missing_accelerator(
            ctx.spec.resources.accelerator,
            idc_instance_accelerators(itype),
            f"instance type {itype}",
        )
        if problem is not None:
            raise ProviderError(problem, code="accelerator_unavailable")
        # off the loop: whether the owner may use the platform's account is a database read
        creds = await run_sync(self.credentials, creating=True)
        spec_cap = ctx.spec.resources.max_hourly_usd
        platform_cap = (
            self.settings.cloud_max_price_per_hour if creds.source == "platform" else None
        )
        if spec_cap is not None and platform_cap is not None and spec_cap > platform_cap:
            raise ProviderError(
                f"the spec's max_hourly_usd of ${spec_cap:.2f} is above the platform's cap of"
                f" ${platform_cap:.2f}/hour for runs on its cloud account"
                " (AIDP_CLOUD_MAX_PRICE_PER_HOUR); lower it or use your own credentials"
                " (ITAC_* secrets); nothing was created",
                code="over_platform_cap",
            )
        named = ((spec_cap, "the spec's max_hourly_usd"), (platform_cap, "the platform's cap"))
        caps = [(cap, which) for cap, which in named if cap is not None]
        if not caps:
            return
        limit, which = min(caps, key=lambda cap: cap[0])
        itype = self._instance_type(ctx)
        total = self._price(ctx)
        if total is None:
            raise ProviderError(
                f"no price known for instance type {itype!r}, so {which} of ${limit:.2f}"
                " cannot be checked; add it to AIDP_IDC_PRICES",
                code="price_unknown",
            )
        if total > limit:
            raise ProviderError(
                f"{ctx.spec.resources.nodes} x {itype} costs ${total:.2f}/hour, over {which}"
                f" of ${limit:.2f}; nothing was created",
                code="over_budget",
            )

    def billing(self, ctx: RunContext) -> Billing:
        return Billing(source=self.credentials(creating=True).source, hourly_usd=self._price(ctx))

    async def _run_key(self, ctx: RunContext, api: IdcClient) -> tuple[str, str]:
        """The run's key pair (made once) registered with the cloud: (private path, name)."""
        keys = ctx.state_dir / "keys"
        keys.mkdir(parents=True, exist_ok=True, mode=0o700)
        private = keys / "idc_ed25519"
        if not private.exists():
            await asyncio.to_thread(
                subprocess.run,
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", key_name(ctx.run_id),
                 "-f", str(private)],
                check=True,
                capture_output=True,
            )  # fmt: skip
        public = private.with_name("idc_ed25519.pub").read_text().strip()
        await api.ensure_ssh_key(key_name(ctx.run_id), public)
        return str(private), key_name(ctx.run_id)

    def _create_body(self, ctx: RunContext, index: int, ssh_key: str) -> dict[str, Any]:
        return create_body(
            ctx,
            index,
            ssh_key,
            region=self.settings.idc_region,
            instance_type=self._instance_type(ctx),
            machine_image=self.settings.idc_machine_image,
        )

    def _terraform(self, ctx: RunContext, binary: str, *, creating: bool = False) -> TerraformRun:
        creds = self.credentials(creating=creating, source=ctx.credential_source)
        return TerraformRun(
            binary=binary,
            module=self.settings.terraform_dir,
            workdir=ctx.state_dir / "terraform",
            env={
                "ITAC_REGION": self.settings.idc_region,
                "ITAC_CLOUDACCOUNT": creds.cloudaccount,
                "ITAC_CLIENT_ID": creds.client_id,
                "ITAC_CLIENT_SECRET": creds.client_secret,
            },
        )

    def terraform_variables(self, ctx: RunContext, ssh_key: str) -> dict[str, Any]:
        """The module's input variables for a run (deploy/terraform/idc/variables.tf)."""
        return {
            "region": self.settings.idc_region,
            "availability_zone": f"{self.settings.idc_region}a",
            "run_id": str(ctx.run_id),
            "project_id": str(ctx.project_id),
            "node_count": ctx.spec.resources.nodes,
            "instance_type": self._instance_type(ctx),
            "machine_image": self.settings.idc_machine_image,
            "ssh_key_name": ssh_key,
            "user_data": USER_DATA,
        }

    async def _create_with_terraform(self, ctx: RunContext, index: int, binary: str) -> Node:
        """All of the run's nodes in one apply (idempotent); node ``index`` from the outputs."""
        async with await run_sync(self.client, creating=True) as api:
            identity, ssh_key = await self._run_key(ctx, api)
        terraform = await run_sync(self._terraform, ctx, binary, creating=True)
        outputs = await terraform.apply(self.terraform_variables(ctx, ssh_key))
        instance = terraform_instance(outputs["instances"][index])
        return self._node(ctx, index, instance, identity)

    async def create_node(self, ctx: RunContext, index: int) -> Node:
        binary = self.use_terraform()
        if binary is not None:
            return await self._create_with_terraform(ctx, index, binary)
        async with await run_sync(self.client, creating=True) as api:
            identity, ssh_key = await self._run_key(ctx, api)
            name = instance_name(ctx.run_id, index)
            instance = await api.instance_by_name(name)
            if instance is None:
                await ctx.report("nodes", f"creating {name} ({self._instance_type(ctx)})")
                instance = await api.create_instance(self._create_body(ctx, index, ssh_key))
            instance = await wait_ready(
                ctx,
                api,
                instance,
                timeout=self.settings.idc_ready_timeout,
                poll_interval=self.settings.idc_poll_interval,
            )
        return self._node(ctx, index, instance, identity)

    def _node(self, ctx: RunContext, index: int, instance: dict[str, Any], identity: str) -> Node:
        return node_from_instance(
            ctx,
            index,
            instance,
            identity,
            provider=self.name,
            node_root=self.settings.ssh_node_root,
        )

    async def check_node(self, ctx: RunContext, node: Node) -> Node:
        """A Ready VM may still be booting sshd: retry connection failures (every 3 s, for
        three minutes)."""
        async for attempt in stamina.retry_context(
            on=_sshd_not_up_yet,
            attempts=None,
            timeout=180.0,
            wait_initial=3.0,
            wait_max=3.0,
            wait_jitter=0.0,
        ):
            with attempt:
                return await probe(node, connect_timeout=self.settings.ssh_connect_timeout)
        raise AssertionError("unreachable")

    async def run(self, node: Node, script: str, *, timeout: float = 60) -> tuple[int, str, str]:
        return await run_ssh(
            node, script, timeout=timeout, connect_timeout=self.settings.ssh_connect_timeout
        )

    async def terminate_node(self, ctx: RunContext, node: Node) -> None:
        if node.resource_id is None:
            return
        async with self.client(source=ctx.credential_source) as api:
            await api.delete_instance(node.resource_id)

    async def release_run(self, ctx: RunContext) -> None:
        """Delete every instance labelled for the run (also ones never recorded) and its key.

        Nothing to do for a run refused at its check (no account chosen: nothing created);
        the reaper still sweeps instances of ended runs on each account."""
        if ctx.credential_source is None:
            return
        binary = self.use_terraform()
        if binary is not None and (ctx.state_dir / "terraform").exists():
            await self._terraform(ctx, binary).destroy()
        async with self.client(source=ctx.credential_source) as api:
            for instance in await api.instances({RUN_LABEL: str(ctx.run_id)}):
                await api.delete_instance(instance["metadata"]["resourceId"])
            await api.delete_ssh_key(key_name(ctx.run_id))
        shutil.rmtree(ctx.state_dir / "keys", ignore_errors=True)

    async def reap(self, *, active_run_ids: Iterable[uuid.UUID]) -> list[str]:
        active = {str(r) for r in active_run_ids}
        removed: list[str] = []
        async with self.client() as api:
            for instance in await api.instances({MANAGED_LABEL: "true"}):
                meta = instance["metadata"]
                run = (meta.get("labels") or {}).get(RUN_LABEL)
                if run and run not in active:
                    await api.delete_instance(meta["resourceId"])
                    removed.append(meta.get("name", meta["resourceId"]))
            for key in await api.list_ssh_keys():
                name = key["metadata"]["name"]
                if name.startswith("aidp-") and name.removeprefix("aidp-") not in active:
                    if is_uuid(name.removeprefix("aidp-")):
                        await api.delete_ssh_key(name)
        return removed

    def ansible_vars(self, node: Node) -> dict[str, Any]:
        values = ansible_ssh_vars(node, connect_timeout=self.settings.ssh_connect_timeout)
        values["ansible_ssh_private_key_file"] = node.identity_file
        return values


def _sshd_not_up_yet(exc: Exception) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable
