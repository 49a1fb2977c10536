"""Settings of the fetcher service (prefix ``AIDP_``)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import BaseServiceSettings

__all__ = ["FetcherSettings"]


class FetcherSettings(BaseServiceSettings):
    """Everything the fetcher service reads from its environment."""

    service_name: str = Field("fetcher", description="Queue, log and table-prefix name.")
    host: str = Field("127.0.0.1", description="Address of this service's HTTP API.")
    port: int = Field(8103, description="Port of this service's HTTP API.")
