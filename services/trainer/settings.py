"""Settings of the trainer service (prefix ``AIDP_``)."""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import Field

from shared.nodes import known_hosts_dir
from shared.settings import SandboxedServiceSettings

__all__ = ["TrainerSettings"]


class TrainerSettings(SandboxedServiceSettings):
    """Everything the trainer service reads from its environment."""

    service_name: str = Field("trainer", description="Queue, log and table-prefix name.")
    host: str = Field("127.0.0.1", description="Address of this service's HTTP API.")
    port: int = Field(8104, description="Port of this service's HTTP API.")
    trainer_max_attempts: int = Field(
        3, ge=1, description="Launches of a run before a retryable failure becomes final."
    )
    trainer_lease_seconds: float = Field(
        15.0,
        gt=0,
        description="A job's ownership lease; an expired lease lets another replica resume it.",
    )
    trainer_poll_seconds: float = Field(
        1.0, gt=0, description="How often jobs check for cancellation and supervisors for work."
    )
    trainer_progress_interval: float = Field(
        0.2,
        ge=0,
        description="Minimum seconds between TrainingProgress events of a run (last always sent).",
    )
    trainer_log_flush_seconds: float = Field(
        0.5, gt=0, description="Longest time a log line waits before its TrainingLog batch is sent."
    )
    trainer_node_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="A node is lost when its SSH connection fails keepalives (sent every"
        " third of this) or, once its training process sent a heartbeat, it sends no line"
        " for this long, and it does not answer again: the run asks for a replacement"
        " (NodeLost) and resumes from its last checkpoint.",
    )
    trainer_kill_grace_seconds: float = Field(
        3.0, ge=0, description="Time between SIGTERM and SIGKILL when stopping training."
    )
    trainer_keep_checkpoints: int = Field(
        2, ge=1, description="Checkpoints kept per run; older ones (and their blobs) are deleted."
    )
    trainer_drop_checkpoints_on_register: bool = Field(
        True, description="Delete all of a run's checkpoints once its model version is registered."
    )
    trainer_ssh_keys: list[Path] = Field(
        default_factory=list, description="Private key files used to reach SSH nodes."
    )
    known_hosts_dir: Path | None = Field(
        None,
        description="The provisioner's known_hosts per user (default data_dir/known_hosts;"
        " one setting for both services): a user's ssh host is checked against the key the"
        " provisioner pinned for the run's owner there.",
    )
    trainer_known_hosts: Path | None = Field(
        None,
        description="Deprecated override, for nodes announced without host keys (an older"
        " provisioner): one known_hosts file for every such node instead of the owner's"
        " pinned file (None: the owner's file for ssh hosts, ~/.ssh/known_hosts otherwise)."
        " A node announced with host keys is checked against exactly those.",
    )
    trainer_accept_unknown_host_keys: bool = Field(
        False,
        description="Opt-in: connect to SSH nodes announced without host keys without"
        " checking their host key (unsafe); keys the provisioner announced are always checked.",
    )
    trainer_health_seconds: float = Field(
        2.0, gt=0, description="Interval of inference-server health checks."
    )
    trainer_health_failures: int = Field(
        3, ge=1, description="Failed health checks in a row after which a server is restarted."
    )
    trainer_serving_python: str = Field(
        sys.executable,
        description="Interpreter for inference servers of models whose run nodes are gone.",
    )
    trainer_serving_restarts: int = Field(
        3, ge=0, description="Restarts of a crashed inference server before DeploymentFailed."
    )
    trainer_serving_start_timeout: float = Field(
        120.0, gt=0, description="Seconds an inference server may take to become ready."
    )
    trainer_cold_start_timeout: float = Field(
        180.0,
        gt=0,
        description="Seconds a request to a deployment scaled to zero (or still starting)"
        " waits for its servers before it is answered 503.",
    )
    trainer_stop_servers_on_shutdown: bool | None = Field(
        None,
        description="Stop the inference servers when the trainer stops (they start again"
        " at its next start); None: in embedded mode (aidp up) only. Distributed replicas"
        " leave them running for another replica to adopt.",
    )
    trainer_warm_workers: int = Field(
        1,
        ge=0,
        le=8,
        description="Warm spare sandboxes (torch and transformers imported) kept per local"
        " node and interpreter for single-process runs; 0 turns warm starts off.",
    )
    trainer_warm_min_available_mb: int = Field(
        2048,
        ge=0,
        description="Spares are stopped, and none started, while the host has less memory"
        " available (MemAvailable) than this.",
    )
    trainer_public_prefix: str = Field(
        "/api", description="Gateway prefix of the endpoint in ModelDeployed."
    )

    def resolved_known_hosts_dir(self) -> Path:
        """The provisioner's per-user known_hosts folder (read here, never created)."""
        return known_hosts_dir(self.data_dir, self.known_hosts_dir)

    def serving_root(self) -> Path:
        """Where deployments of models without live run nodes get their workspaces."""
        path = self.data_dir / "trainer-serving"
        path.mkdir(parents=True, exist_ok=True)
        return path
