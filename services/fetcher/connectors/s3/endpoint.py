"""The endpoint an S3 source is fetched from, checked by the SSRF guard, and the boto3
client for it (a session of its own: never the process's AWS profile, environment or
files)."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from services.fetcher.connectors.base import Credentials
from services.fetcher.connectors.common import host_literal
from services.fetcher.errors import FetchFailed
from services.fetcher.ssrf import check_host, is_allowed
from shared.data_sources import check_s3_options
from shared.spec import Source

__all__ = ["ClientFactory", "checked_endpoint", "signed"]


def signed(creds: Credentials) -> bool:
    """Whether requests are signed (both keys given); else unsigned (a public bucket)."""
    return bool(creds.s3_access_key_id and creds.s3_secret_access_key)


def checked_endpoint(source: Source, creds: Credentials, allow_hosts: list[str]) -> str | None:
    """The endpoint to use, checked by the SSRF guard (None: AWS)."""
    endpoint = source.endpoint or creds.s3_endpoint_url
    if not endpoint:
        return None
    endpoint = endpoint.strip().rstrip("/")
    if not source.endpoint:  # from the secret: validated here, never echoed
        try:
            check_s3_options(endpoint, None)
        except ValueError:
            raise FetchFailed(
                "The S3_ENDPOINT_URL secret is not an https:// (or http://) base URL "
                "without user info, path or query."
            ) from None
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    label = f"{source.uri} (endpoint {parts.scheme}://{parts.netloc})"
    addresses = check_host(host, port, allow=allow_hosts, label=label)
    if parts.scheme == "http" and not all(is_allowed(host, a, allow_hosts) for a in addresses):
        raise FetchFailed(
            f"Refused to fetch {label}: plain http:// endpoints are only used for hosts "
            "an administrator lists in AIDP_FETCH_ALLOW_HOSTS; use https://."
        )
    return endpoint


@dataclass(frozen=True)
class ClientFactory:
    """Makes the boto3 client of a source (the connector's network settings)."""

    allow_hosts: list[str]
    connect_timeout: float
    read_timeout: float

    def client(self, source: Source, creds: Credentials, endpoint: str | None) -> Any:
        """A boto3 S3 client for ``endpoint`` (None: AWS), signed when both keys are given."""
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        is_signed = signed(creds)
        if not is_signed and (creds.s3_access_key_id or creds.s3_secret_access_key):
            raise FetchFailed(
                f"{source.uri}: name both S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY in the "
                "spec's secrets (only one of them was found), or neither for a public bucket."
            )
        config = Config(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path" if endpoint else "auto"},
            signature_version=None if is_signed else UNSIGNED,
            ignore_configured_endpoint_urls=True,
            user_agent_extra="aidp-fetcher",
        )
        # a session of its own: never the process's AWS profile, environment or files
        session = boto3.session.Session(
            aws_access_key_id=creds.s3_access_key_id if is_signed else None,
            aws_secret_access_key=creds.s3_secret_access_key if is_signed else None,
            aws_session_token=creds.s3_session_token if is_signed else None,
            region_name=source.region or "us-east-1",
        )
        return session.client("s3", endpoint_url=self._pinned(source, endpoint), config=config)

    def _pinned(self, source: Source, endpoint: str | None) -> str | None:
        """The URL the client connects to. A plain-http endpoint (an allow-listed internal
        store) is addressed by the IP the guard checks now, so a second DNS answer cannot
        send the request elsewhere; an https one keeps its name (TLS verifies that name,
        which a rebound address cannot present)."""
        if endpoint is None or not endpoint.startswith("http://"):
            return endpoint
        parts = urlsplit(endpoint)
        port = parts.port or 80
        label = f"{source.uri} (endpoint http://{parts.netloc})"
        addresses = check_host(parts.hostname or "", port, allow=self.allow_hosts, label=label)
        for address in addresses:  # the first checked address that answers
            try:
                socket.create_connection((str(address), port), timeout=self.connect_timeout).close()
            except OSError:
                continue
            return f"http://{host_literal(address)}:{port}"
        raise FetchFailed(
            f"Could not reach the S3 service at {parts.netloc} for {source.uri}; "
            "it will be retried.",
            retryable=True,
        )
