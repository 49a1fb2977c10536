"""The SSRF guard of https:// sources."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from services.fetcher.errors import FetchFailed
from services.fetcher.ssrf import check_url
from shared.events import parse_payload
from tests.support.hf_server import HubServer
from tests.unit.fetcher.harness import running_fetcher, spec


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/x",
        "https://10.1.2.3/x",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/x",
        "https://192.168.0.1/x",
        "https://localhost/x",
        "https://100.64.0.1/x",
    ],
)
def test_internal_addresses_are_refused(url: str) -> None:
    with pytest.raises(FetchFailed, match="internal address"):
        check_url(url, allow=[])


@pytest.mark.parametrize(
    "url",
    [
        "https://[2002:7f00:1::1]/x",  # 6to4 of 127.0.0.1
        "https://[2002:a9fe:a9fe::1]/latest/meta-data",  # 6to4 of 169.254.169.254
        "https://[2002:0a01:0203::]/x",  # 6to4 of 10.1.2.3
        "https://[2001:0:4136:e378:8000:63bf:f5fe:fffe]/x",  # Teredo, client 10.1.0.1
        "https://[2001:0:0a00:0001::1]/x",  # Teredo, server 10.0.0.1
        "https://[::ffff:127.0.0.1]/x",  # IPv4-mapped
        "https://[::ffff:a9fe:a9fe]/x",  # IPv4-mapped, hex form
        "https://[::127.0.0.1]/x",  # IPv4-compatible
        "https://[::a01:203]/x",  # IPv4-compatible 10.1.2.3
        "https://[::ffff:0:7f00:1]/x",  # IPv4-translated
        "https://[64:ff9b::a9fe:a9fe]/x",  # NAT64 of 169.254.169.254
        "https://[64:ff9b:1::c0a8:1]/x",  # local-use NAT64 of 192.168.0.1
        "https://[ff02::1]/x",  # multicast (is_global in some Pythons)
        "https://[fc00::1]/x",
        "https://[fe80::1]/x",
        "https://[::]/x",
        "https://0.0.0.0/x",
        "https://192.0.0.1/x",
        "https://198.18.0.1/x",
    ],
)
def test_ipv6_forms_of_internal_addresses_are_refused(url: str) -> None:
    with pytest.raises(FetchFailed, match="internal address"):
        check_url(url, allow=[])


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "2606:4700:4700::1111", "2002:808:808::1", "::ffff:8.8.8.8", "64:ff9b::808:808"],
)
def test_global_addresses_and_their_wrappers_pass(address: str) -> None:
    host = f"[{address}]" if ":" in address else address
    assert check_url(f"https://{host}/x", allow=[]) == [ipaddress.ip_address(address)]


def test_allow_list_covers_the_carried_address() -> None:
    check_url("https://[2002:0a01:0203::]/x", allow=["10.0.0.0/8"])
    check_url("https://[::ffff:10.1.2.3]/x", allow=["10.0.0.0/8"])


def test_allow_list_by_host_or_network() -> None:
    check_url("https://localhost/x", allow=["localhost"])
    check_url("https://10.1.2.3/x", allow=["10.0.0.0/8"])
    with pytest.raises(FetchFailed):
        check_url("https://127.0.0.1/x", allow=["localhost"])  # a name does not allow an IP


def test_only_https() -> None:
    with pytest.raises(FetchFailed, match="only https"):
        check_url("http://example.com/x", allow=["example.com"])


async def test_refusal_reaches_the_run(tmp_path: Path, hub: HubServer) -> None:
    hub.commit("org/tiny", {"config.json": b"{}"})
    async with running_fetcher(tmp_path, hf_endpoint=hub.url) as f:
        failed = parse_payload(await f.fetch(spec("hf://org/tiny", "https://169.254.169.254/x")))
        assert "Refused to fetch" in failed.reason and not failed.retryable  # type: ignore[attr-defined]
