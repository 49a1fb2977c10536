"""The base settings class every service extends (docs/design.md §8).

One pydantic-settings class per service, prefix ``AIDP_``. Values are read when the class
is instantiated (in ``main.py``), never at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from shared.sandbox import SandboxPolicy

__all__ = ["PLACEHOLDER_SECRETS", "BaseServiceSettings", "SandboxedServiceSettings"]

#: Values that mean "nobody set this": refused outside embedded mode.
PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "changethis", "secret", "password", "dev", "devtoken", "root"}
)


class BaseServiceSettings(BaseSettings):
    """Settings shared by every service. Subclasses add their own fields."""

    model_config = SettingsConfigDict(env_prefix="AIDP_", extra="ignore", env_file=None)

    service_name: str = Field("aidp", description="Name used in logs, traces and queues.")
    mode: Literal["embedded", "distributed"] = Field(
        "embedded", description="embedded: one process, dev defaults allowed; distributed: strict."
    )
    data_dir: Path = Field(Path.home() / ".aidp", description="Root of all local state.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: a SQLite file per service under data_dir."
    )
    db_pool_size: int = Field(
        32,
        ge=1,
        description="Most database connections of the async read pool (hot API reads, "
        "shared.db.aio); keep it at least the number of requests served at once.",
    )
    bus_url: str = Field("memory://", description="memory:// or amqp(s)://user:pass@host/vhost")
    store_dir: Path | None = Field(
        None, description="Encrypted artifact store (ciphertext only); default data_dir/store."
    )
    store_min_free_mb: float = Field(
        16.0,
        ge=0,
        description="Space (MiB) a write to the artifact store must leave free on its disk; a "
        "fetch or checkpoint that would go below fails with a message naming the disk.",
    )
    vault_addr: str | None = Field(None, description="OpenBao/Vault address; None = local bao.")
    vault_token: SecretStr | None = Field(None, description="Vault token (or use AppRole).")
    vault_role_id: str | None = Field(None, description="AppRole role id.")
    vault_secret_id: SecretStr | None = Field(None, description="AppRole secret id.")
    vault_cacert: Path | None = Field(None, description="CA bundle for Vault TLS.")
    transit_key: str = Field("aidp-artifacts", description="Transit key wrapping data keys.")
    log_level: str = Field("INFO", description="Root log level.")
    log_json: bool = Field(False, description="JSON log lines instead of text.")
    allow_local_provider: bool = Field(
        False,
        description="Distributed mode only: allow `provider: local` (runs on the service's own"
        " machine, sandboxed). Off by default: a production control plane runs no tenant code."
        " Embedded mode always allows it.",
    )
    max_json_bytes: int = Field(
        1024**2,
        gt=0,
        description="Largest request body (bytes) on every route but uploads; larger "
        "answers 413 before it is read (a chunked body is cut off at the limit).",
    )
    max_upload_bytes: int = Field(
        2 * 1024**3,
        gt=0,
        description="Largest upload (bytes, POST /api/uploads), counted as it streams to "
        "disk; larger answers 413 and nothing of it is kept.",
    )
    otel_exporter: Literal["none", "console", "memory"] = Field(
        "none",
        description="Where spans go (an OTLP exporter can be added by deployment); with "
        "none the tracing SDK is not loaded and spans cost nothing.",
    )
    otel_sample_ratio: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="Share of root spans (requests, events with no parent) kept when an "
        "exporter is set; children follow their parent.",
    )

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> BaseServiceSettings:
        if self.mode == "embedded":
            return self
        for name in ("vault_token", "vault_secret_id"):
            value = getattr(self, name)
            if value is None:
                continue
            if value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
                raise ValueError(f"AIDP_{name.upper()} is a placeholder; set a real secret")
        if self.vault_addr is None:
            raise ValueError("AIDP_VAULT_ADDR is required in distributed mode")
        if self.vault_token is None and not (self.vault_role_id and self.vault_secret_id):
            raise ValueError(
                "distributed mode needs AIDP_VAULT_TOKEN or AIDP_VAULT_ROLE_ID/SECRET_ID"
            )
        return self

    def local_provider_allowed(self) -> bool:
        """May runs use ``provider: local`` here (embedded, or distributed with the opt-in)?"""
        return self.mode == "embedded" or self.allow_local_provider

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.data_dir / (self.service_name + '.db')}"

    @property
    def store_min_free_bytes(self) -> int:
        return int(self.store_min_free_mb * 1024 * 1024)

    def resolved_store_dir(self) -> Path:
        path = self.store_dir or self.data_dir / "store"
        path.mkdir(parents=True, exist_ok=True)
        return path


class SandboxedServiceSettings(BaseServiceSettings):
    """A service that starts sandboxed processes on its machine (:mod:`shared.sandbox`): the
    trainer (runs, model servers) and the provisioner (local environment builds). Both read
    the same ``AIDP_SANDBOX_*`` variables, so they lease uids from one range and one lease
    directory and never hand the same uid to two tenants."""

    sandbox_uid_min: int = Field(
        3_000_000, ge=1000, description="First uid of the range sandboxes get theirs from."
    )
    sandbox_uid_max: int = Field(3_999_999, ge=1000, description="Last uid of that range.")
    sandbox_max_open_files: int = Field(
        65_536, ge=64, description="Open files per sandboxed process (RLIMIT_NOFILE)."
    )
    sandbox_max_processes: int = Field(
        4_096, ge=16, description="Processes and threads per sandbox uid (RLIMIT_NPROC)."
    )
    sandbox_memory_mb: int | None = Field(
        None,
        ge=64,
        description="Memory per sandboxed process tree (a cgroup, where the host allows one);"
        " default: three quarters of this machine's memory.",
    )
    sandbox_state_dir: Path | None = Field(
        None,
        description="uid leases and generated /etc files (0700, never mounted into a sandbox);"
        " default data_dir/sandbox. Services of one machine with different data dirs must"
        " share it.",
    )
    sandbox_bwrap: str = Field("bwrap", description="The bubblewrap binary (name or path).")

    def sandbox_policy(self) -> SandboxPolicy:
        """The sandbox's limits and uid range (state under ``sandbox_state_dir``)."""
        from shared.sandbox import SandboxPolicy

        state = self.sandbox_state_dir or self.data_dir / "sandbox"
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        memory = self.sandbox_memory_mb
        if memory is None:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            memory = max(256, int(total * 0.75) // (1024 * 1024))
        return SandboxPolicy(
            state_dir=state,
            uid_min=self.sandbox_uid_min,
            uid_max=self.sandbox_uid_max,
            max_open_files=self.sandbox_max_open_files,
            max_processes=self.sandbox_max_processes,
            memory_mb=memory,
            bwrap=self.sandbox_bwrap,
        )
