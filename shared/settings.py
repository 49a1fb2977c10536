"""The base settings class every service extends (DESIGN §8).

One pydantic-settings class per service, prefix ``AIDP_``. Values are read when the class
is instantiated (in ``main.py``), never at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["PLACEHOLDER_SECRETS", "BaseServiceSettings"]

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
    bus_url: str = Field("memory://", description="memory:// or amqp(s)://user:pass@host/vhost")
    store_dir: Path | None = Field(
        None, description="Encrypted artifact store (ciphertext only); default data_dir/store."
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
    otel_exporter: Literal["none", "console", "memory"] = Field(
        "none", description="Where spans go (an OTLP exporter can be added by deployment)."
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

    def resolved_store_dir(self) -> Path:
        path = self.store_dir or self.data_dir / "store"
        path.mkdir(parents=True, exist_ok=True)
        return path
