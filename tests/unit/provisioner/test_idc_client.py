"""The IDC API client's auth and retries (Authlib's OAuth2 client, stamina) against the local
Intel Tiber AI Cloud server speaking the documented API over real HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from services.provisioner.drivers.idc_api import IdcClient, IdcCredentials
from shared.errors import ProviderError, TransientError
from tests.support.idc_server import IdcCloud, idc_server
from tests.support.infra import free_port

pytestmark = pytest.mark.timeout(60)

_INSTANCE = {"metadata": {"name": "aidp-test-0", "labels": {}}, "spec": {"instanceType": "x"}}


@pytest.fixture
def cloud() -> Iterator[tuple[IdcCloud, str]]:
    made = IdcCloud()
    with idc_server(made) as url:
        yield made, url


def _client(made: IdcCloud, url: str, **kw: float) -> IdcClient:
    creds = IdcCredentials(made.client_id, made.client_secret, made.cloudaccount, "user")
    options: dict[str, float] = {"backoff": 0.01, **kw}
    return IdcClient(
        api_url=url,
        token_url=f"{url}/oauth2/token",
        credentials=creds,
        max_retries=int(options.pop("max_retries", 6)),
        **options,
    )


async def test_rate_limit_waits_as_long_as_retry_after_asks_then_succeeds(
    cloud: tuple[IdcCloud, str],
) -> None:
    made, url = cloud
    made.inject("GET", "/v1/cloudaccounts", 429, times=1, retry_after="1")
    async with _client(made, url) as api:
        started = time.monotonic()
        assert await api.instances() == []
        waited = time.monotonic() - started
    assert made.statuses(429) == 1 and made.statuses(200) >= 2  # the token, then the list
    assert waited >= 0.9  # Retry-After, not the 0.01 s backoff


async def test_server_errors_of_the_token_endpoint_are_retried(
    cloud: tuple[IdcCloud, str],
) -> None:
    made, url = cloud
    made.inject("POST", "/oauth2/token", 503, times=2)
    async with _client(made, url) as api:
        assert await api.instances() == []
    assert made.statuses(503) == 2 and made.tokens_issued == 1


async def test_retries_are_bounded_then_transient(cloud: tuple[IdcCloud, str]) -> None:
    made, url = cloud
    made.inject("GET", "/v1/cloudaccounts", 502, times=10)
    async with _client(made, url, max_retries=2) as api:
        with pytest.raises(TransientError, match="still failing after 2 retries: 502"):
            await api.instances()
    assert made.statuses(502) == 3  # the first try and two retries


async def test_unreachable_api_is_transient_after_the_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    creds = IdcCredentials("id", "secret", "123", "user")
    client = IdcClient(
        api_url=url, token_url=f"{url}/oauth2/token", credentials=creds, max_retries=2,
        backoff=0.01,
    )  # fmt: skip
    async with client as api:
        with pytest.raises(TransientError, match="after 2 retries: ConnectError"):
            await api.instances()
    assert api.calls == 3


async def test_quota_and_capacity_answers_fail_at_once(cloud: tuple[IdcCloud, str]) -> None:
    made, url = cloud
    made.no_capacity_types = {"x"}
    async with _client(made, url) as api:
        with pytest.raises(ProviderError) as capacity:
            await api.create_instance(_INSTANCE)
        made.max_instances = 0
        with pytest.raises(ProviderError) as quota:
            await api.create_instance(_INSTANCE)
    assert capacity.value.code == "no_capacity" and capacity.value.retryable
    assert "insufficient capacity" in str(capacity.value)
    assert quota.value.code == "quota_exceeded" and not quota.value.retryable
    assert made.statuses(429) == 2  # neither was tried again


async def test_client_errors_are_not_retried(cloud: tuple[IdcCloud, str]) -> None:
    made, url = cloud
    async with _client(made, url) as api:
        assert await api.instance("no-such-id") is None  # a 404: None, asked once
        await api.create_instance(_INSTANCE)
        with pytest.raises(ProviderError) as conflict:
            await api.create_instance(_INSTANCE)
    assert conflict.value.code == "idc_409" and "already exists" in str(conflict.value)
    assert made.statuses(404) == 1 and made.statuses(409) == 1


async def test_token_is_refreshed_before_it_expires(cloud: tuple[IdcCloud, str]) -> None:
    made, url = cloud
    made.token_ttl = 2.0
    async with _client(made, url) as api:
        assert await api.instances() == []
        assert await api.instances() == []  # the same token, still fresh
        assert made.tokens_issued == 1
        await asyncio.sleep(2.2)  # past its expiry
        assert await api.instances() == []
    assert made.tokens_issued == 2
    assert made.statuses(401) == 0  # fetched ahead of the call, not after a refusal
