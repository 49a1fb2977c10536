"""Settings of the fetcher service (prefix ``AIDP_``; ``HF_ENDPOINT`` and
``KAGGLE_API_ENVIRONMENT`` keep the client libraries' own names)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field

from shared.settings import BaseServiceSettings

__all__ = ["FetcherSettings"]


class FetcherSettings(BaseServiceSettings):
    """Everything the fetcher service reads from its environment."""

    service_name: str = Field("fetcher", description="Queue, log and table-prefix name.")
    host: str = Field("127.0.0.1", description="Address of this service's HTTP API.")
    port: int = Field(8103, description="Port of this service's HTTP API.")
    hf_endpoint: str = Field(
        "https://huggingface.co",
        validation_alias=AliasChoices("HF_ENDPOINT", "hf_endpoint"),
        description="HuggingFace Hub (or mirror) base URL; env HF_ENDPOINT, no AIDP_ prefix.",
    )
    kaggle_api_environment: str = Field(
        "PROD",
        validation_alias=AliasChoices("KAGGLE_API_ENVIRONMENT", "kaggle_api_environment"),
        description="kagglesdk environment (PROD, LOCALHOST, TEST, ...); the client's own switch.",
    )
    kaggle_endpoint: str | None = Field(
        None,
        description="Override of the base URL the Kaggle environment maps to (kagglesdk "
        "hard-codes one URL per environment); for a local Kaggle-compatible server.",
    )
    cache_max_gb: float = Field(50.0, gt=0, description="Cache budget (GB); LRU eviction above.")
    user_storage_quota_bytes: int = Field(
        50 * 1024**3,
        ge=0,
        description="Bytes one user may hold: their uploads plus the cached artifacts their "
        "active runs pin. An upload past it answers 413, a download past it fails the run's "
        "fetch. 0 = unlimited.",
    )
    url_max_bytes: int = Field(10 * 1024**3, gt=0, description="Largest https:// download.")
    fetch_allow_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts or IP networks (CIDR) https:// sources may reach even when they "
        "resolve to private, loopback or link-local addresses (SSRF guard exceptions).",
    )
    connect_timeout: float = Field(10.0, gt=0, description="Seconds to connect to a provider.")
    read_timeout: float = Field(60.0, gt=0, description="Seconds without bytes before giving up.")
    lease_seconds: float = Field(60.0, gt=0, description="Single-flight lease; renewed while held.")
    progress_interval: float = Field(0.5, gt=0, description="Min seconds between FetchProgress.")
    verify_cached: bool = Field(
        False, description="Decrypt and verify every blob of a cache hit (slow; else presence)."
    )
    url_ca_bundle: Path | None = Field(
        None, description="Extra CA bundle trusted for https:// sources (e.g. an internal mirror)."
    )
    fetch_attempts: int = Field(3, ge=1, le=10, description="Tries per source on retryable errors.")
    retry_delay: float = Field(
        2.0, ge=0, description="Seconds before the first retry of a source (doubling after)."
    )
    s3_part_bytes: int = Field(
        8 * 1024**2,
        ge=64 * 1024,
        description="Bytes per ranged GET of an s3:// object; an interrupted part resumes "
        "from the bytes already on disk.",
    )
    db_statement_timeout: float = Field(
        600.0, gt=0, description="Seconds a postgresql:// / mysql:// dataset query may run."
    )
    db_max_bytes: int = Field(
        10 * 1024**3, gt=0, description="Largest Parquet export of a database query."
    )
    db_batch_rows: int = Field(
        10_000, ge=1, le=1_000_000, description="Rows per fetch from a database cursor."
    )
    work_dir: Path | None = Field(
        None,
        description="Plaintext scratch for downloads (outside the store); default "
        "data_dir/fetcher-work. Files are deleted as soon as they are stored.",
    )

    def resolved_work_dir(self) -> Path:
        path = self.work_dir or self.data_dir / "fetcher-work"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def cache_max_bytes(self) -> int:
        return int(self.cache_max_gb * 1024**3)
