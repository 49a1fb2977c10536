"""Settings of the provisioner service (prefix ``AIDP_``; the Intel cloud ones also read the
provider's own ``ITAC_*`` names)."""

from __future__ import annotations

import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator

from shared.nodes import known_hosts_dir
from shared.settings import SandboxedServiceSettings

__all__ = [
    "DEFAULT_PRICES",
    "DEFAULT_TORCH_INDEXES",
    "CredentialUsers",
    "ProvisionerSettings",
    "parse_credential_users",
]

#: USD per hour by instance type (public list prices, rounded; override with
#: ``AIDP_IDC_PRICES='{"vm-spr-sml": 0.5}'``).
DEFAULT_PRICES: dict[str, float] = {
    "vm-spr-tny": 0.11,
    "vm-spr-sml": 0.36,
    "vm-spr-med": 0.72,
    "vm-spr-lrg": 1.44,
    "vm-icp-gaudi2-1": 1.30,
    "bm-spr": 3.30,
    "bm-icp-gaudi2": 10.42,
    "bm-spr-gaudi2": 10.42,
    "bm-spr-pvc-1100-4": 8.00,
    "bm-spr-pvc-1550-8": 16.00,
}

#: Where each accelerator's torch build comes from (an extra index for uv).
#: gaudi: Habana's torch ships with the machine image; the env inherits it.
DEFAULT_TORCH_INDEXES: dict[str, str] = {
    "cpu": "https://download.pytorch.org/whl/cpu",
    "cuda": "https://download.pytorch.org/whl/cu126",
    "xpu": "https://download.pytorch.org/whl/xpu",
    "gaudi": "",
}


@dataclass(frozen=True)
class CredentialUsers:
    """``AIDP_CLOUD_PLATFORM_CREDENTIAL_USERS`` parsed: everyone, or these user ids."""

    everyone: bool
    user_ids: frozenset[uuid.UUID]


def parse_credential_users(value: str) -> CredentialUsers:
    """``none`` | ``all`` | user ids separated by commas; ValueError naming a bad entry."""
    text = value.strip()
    if text.lower() in ("", "none"):
        return CredentialUsers(False, frozenset())
    if text.lower() == "all":
        return CredentialUsers(True, frozenset())
    ids = set()
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        try:
            ids.add(uuid.UUID(entry))
        except ValueError:
            raise ValueError(
                f"AIDP_CLOUD_PLATFORM_CREDENTIAL_USERS: {entry!r} is not a user id (use 'none',"
                " 'all' or user ids; grant by email with PUT /api/admin/cloud-access)"
            ) from None
    return CredentialUsers(False, frozenset(ids))


def _default_find_links() -> list[str]:
    return ["/opt/wheels"] if Path("/opt/wheels").is_dir() else []


def _default_uv() -> str:
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else (shutil.which("uv") or "uv")


class ProvisionerSettings(SandboxedServiceSettings):
    """Everything the provisioner service reads from its environment (``AIDP_SANDBOX_*``:
    the local node's environment builds run in the same sandbox as the trainer's runs)."""

    service_name: str = Field("provisioner", description="Queue, log and table-prefix name.")
    host: str = Field("127.0.0.1", description="Address of this service's HTTP API.")
    port: int = Field(8102, description="Port of this service's HTTP API.")

    # -- environments ------------------------------------------------------------------
    env_dir: Path | None = Field(
        None,
        description="Built environments and locks, keyed by lock hash (default data_dir/envs);"
        " share it between data dirs to build torch once per machine.",
    )
    torch_version: str = Field("2.13.0", description="torch release every environment pins.")
    tensorflow_version: str = Field(
        "2.21.0",
        description="TensorFlow release of environment.framework: tensorflow envs"
        " (tensorflow-cpu on cpu nodes, tensorflow[and-cuda] on cuda nodes).",
    )
    torch_find_links: list[str] = Field(
        default_factory=_default_find_links,
        description="Extra find-links for uv (uv ignores pip's config); default /opt/wheels if"
        " it exists.",
    )
    torch_indexes: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_TORCH_INDEXES),
        description="Extra index URL for torch per accelerator (cpu, cuda, xpu, gaudi);"
        " empty = none.",
    )
    use_torch_index: bool = Field(
        False,
        description="Add the accelerator's torch index to resolution (off by default: the"
        " find-links wheel and PyPI suffice for cpu here).",
    )
    index_url: str | None = Field(None, description="Primary package index (default PyPI).")
    always_packages: list[str] = Field(
        default_factory=lambda: ["transformers", "safetensors"],
        description="Packages every environment gets besides the spec's (the trainer's serving"
        " needs them).",
    )
    uv_binary: str = Field(default_factory=_default_uv, description="uv on the controller.")
    allow_source_builds: bool = Field(
        False,
        description="Let uv build source distributions (run their PEP 517 build hooks) when"
        " resolving a lock and installing it on nodes. Off: wheels only, and a package"
        " without a wheel fails the run with 'no wheel for <package>'.",
    )
    python_downloads: Literal["never", "automatic"] = Field(
        "never", description="May uv download a missing Python on a node?"
    )
    package_source: Literal["index", "push"] = Field(
        "index",
        description="index: nodes download packages themselves; push: the controller"
        " downloads the locked wheels once and copies them to each node (air-gapped hosts).",
    )
    ssh_package_source: Literal["index", "push"] | None = Field(
        None, description="package_source for ssh nodes (default: package_source)."
    )
    always_run_playbook: bool = Field(
        False,
        description="Run Ansible even when every node already holds the env (re-applies"
        " node_base and serving; the env itself is still not rebuilt).",
    )
    ansible_dir: Path = Field(
        Path(__file__).resolve().parents[2] / "deploy" / "ansible",
        description="The Ansible project (roles, playbooks).",
    )
    node_system_packages: list[str] = Field(
        default_factory=list,
        description="System packages node_base installs on ssh/idc nodes (apt/dnf).",
    )

    # -- local and ssh -------------------------------------------------------------------
    local_max_runs: int = Field(2, ge=1, description="Concurrent runs on the local node.")
    local_accelerators: list[Literal["cpu", "cuda", "gaudi", "xpu"]] | None = Field(
        None,
        description="Accelerators the local node offers (JSON list); unset: detected once"
        " (cuda: nvidia-smi lists a GPU; gaudi: hl-smi; xpu: xpu-smi or sycl-ls on PATH).",
    )
    ssh_node_root: str = Field(
        ".aidp-node", description="Directory on ssh nodes (relative to the login's home)."
    )
    ssh_connect_timeout: int = Field(10, ge=1, description="Seconds for an SSH connect.")
    known_hosts_dir: Path | None = Field(
        None,
        description="known_hosts per user for ssh nodes (default data_dir/known_hosts); the"
        " trainer checks host keys against the same files (shared.nodes.user_known_hosts).",
    )

    # -- Intel Tiber AI Cloud ---------------------------------------------------------------
    idc_api_url: str = Field(
        "https://us-region-2-sdk-api.cloud.intel.com", description="IDC compute API base."
    )
    idc_token_url: str = Field(
        "https://client-token.api.idcservice.net/oauth2/token", description="OAuth token URL."
    )
    idc_region: str = Field(
        "us-region-2", validation_alias=AliasChoices("AIDP_IDC_REGION", "ITAC_REGION")
    )
    idc_cloudaccount: str | None = Field(
        None, validation_alias=AliasChoices("AIDP_IDC_CLOUDACCOUNT", "ITAC_CLOUDACCOUNT")
    )
    idc_client_id: str | None = Field(
        None, validation_alias=AliasChoices("AIDP_IDC_CLIENT_ID", "ITAC_CLIENT_ID")
    )
    idc_client_secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("AIDP_IDC_CLIENT_SECRET", "ITAC_CLIENT_SECRET")
    )
    idc_machine_image: str = Field("ubuntu-2204-jammy-v20230122", description="Image name.")
    idc_default_instance_type: str = Field("vm-spr-sml", description="When the spec has none.")
    idc_prices: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES), description="USD/hour per instance type."
    )
    idc_poll_interval: float = Field(5.0, gt=0, description="Seconds between instance polls.")
    idc_ready_timeout: float = Field(1200.0, gt=0, description="Seconds to wait for Ready.")
    idc_max_retries: int = Field(6, ge=0, description="Retries of a 429/5xx before giving up.")
    idc_backoff: float = Field(1.0, gt=0, description="First retry delay (doubles).")
    idc_use_terraform: bool = Field(
        False,
        description="Create instances with deploy/terraform/idc when terraform/tofu is"
        " on PATH; direct API calls otherwise.",
    )
    terraform_dir: Path = Field(
        Path(__file__).resolve().parents[2] / "deploy" / "terraform" / "idc",
        description="The Terraform module for IDC.",
    )

    # -- platform cloud credentials and price caps (services/provisioner/cloud_access.py) -----
    cloud_platform_credential_users: str = Field(
        "none",
        description="Who may provision on the platform's own cloud credentials when they store"
        " none of their own: 'none', 'all', or user ids separated by commas (more through"
        " PUT /api/admin/cloud-access). Everyone else needs their own ITAC_* secrets.",
    )
    cloud_max_price_per_hour: float | None = Field(
        None,
        gt=0,
        description="USD/hour one run may cost on the platform's credentials (all its nodes);"
        " the run's cap is min(spec max_hourly_usd, this); a spec asking more is refused.",
    )
    cloud_max_price_per_user_hour: float | None = Field(
        None,
        gt=0,
        description="USD/hour all of one user's active runs on the platform's credentials may"
        " cost together; a run that would exceed it is refused before anything is created.",
    )

    @field_validator("cloud_platform_credential_users")
    @classmethod
    def _credential_users(cls, value: str) -> str:
        parse_credential_users(value)
        return value

    # -- lifecycle -------------------------------------------------------------------------
    reaper_interval: float = Field(
        60.0, gt=0, description="Seconds between reaper/autostop sweeps."
    )
    retry_delay: float = Field(5.0, gt=0, description="Seconds before retrying a busy driver.")
    provisioner_lease_seconds: float = Field(
        30.0,
        gt=0,
        description="How long a replica's lease on a run lasts unless renewed (every third of"
        " it while a job works); an expired lease lets another replica take the run over.",
    )
    max_node_replacements: int = Field(
        3,
        ge=0,
        description="Nodes a run may have replaced after losing them (NodeLost) before a"
        " further loss fails it.",
    )

    def resolved_env_dir(self) -> Path:
        path = self.env_dir or self.data_dir / "envs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def resolved_known_hosts_dir(self) -> Path:
        path = known_hosts_dir(self.data_dir, self.known_hosts_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def workspaces_dir(self) -> Path:
        path = self.data_dir / "workspaces"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def controller_dir(self) -> Path:
        """Per-run controller state (keys written from Vault, ansible artifacts): 0700."""
        path = self.data_dir / "provisioner"
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path
