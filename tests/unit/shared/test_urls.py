"""URLs in events and logs lose user info and query strings (signed-URL tokens)."""

from __future__ import annotations

import pytest

from shared.events import ArtifactRef, ArtifactsCached, ArtifactsFailed, FetchProgress
from shared.telemetry import scrub
from shared.urls import public_url, scrub_urls

SIGNED = "https://user:pw@files.example:8443/d/data.csv?token=secret&X-Amz-Signature=sig#frag"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (SIGNED, "https://files.example:8443/d/data.csv"),
        ("http://[::1]:80/a?b=c", "http://[::1]:80/a"),
        ("HTTPS://Host/x?y", "https://host/x"),
        ("hf://org/model@main", "hf://org/model@main"),
        ("upload://abc", "upload://abc"),
        ("https://h:notaport/x?token=secret", "https://[invalid url]"),
    ],
)
def test_public_url(url: str, shown: str) -> None:
    assert public_url(url) == shown


def test_urls_in_text_are_scrubbed_and_punctuation_kept() -> None:
    text = f"GET {SIGNED}: 403 (see https://h.example/help?ref=secret)."
    assert scrub_urls(text) == (
        "GET https://files.example:8443/d/data.csv: 403 (see https://h.example/help)."
    )
    assert "secret" not in scrub(text) and "pw" not in scrub(text)


def test_events_never_carry_a_url_token() -> None:
    ref = ArtifactRef(
        kind="dataset",
        source=SIGNED,
        resolved_revision="r",
        digest="d",
        size_bytes=1,
        cache_key="k",
    )
    payloads = [
        ArtifactsCached(artifacts=[ref]),
        FetchProgress(source=SIGNED, bytes_done=1),
        ArtifactsFailed(source=SIGNED, reason=f"could not fetch {SIGNED}: 403"),
    ]
    for payload in payloads:
        wire = payload.model_dump_json()
        assert "secret" not in wire and "pw@" not in wire and "sig" not in wire
        assert "files.example:8443/d/data.csv" in wire
    # a consumer parsing an older producer's event gets the public form too
    parsed = ArtifactsCached.model_validate_json(
        '{"artifacts": [{"kind": "dataset", "source": "https://h/x?token=secret",'
        ' "resolved_revision": "r", "digest": "d", "size_bytes": 1, "cache_key": "k"}]}'
    )
    assert parsed.artifacts[0].source == "https://h/x"
