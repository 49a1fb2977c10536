"""The SSRF guard of https:// sources."""

from __future__ import annotations

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
