"""URLs as they may be shown: without user info, query string or fragment.

A source URL can carry credentials (``https://user:pass@host/…``) or a signed-URL token in
its query string (``?X-Amz-Signature=…``, ``?token=…``). Events, logs and API answers use
:func:`public_url` / :func:`scrub_urls`; only the fetcher's download itself uses the full URL.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["public_url", "scrub_urls"]

_URL = re.compile(r"\bhttps?://[^\s'\"<>]+", re.IGNORECASE)


def public_url(url: str) -> str:
    """An http(s) URL without user info, query string or fragment; anything else unchanged."""
    if not url.lower().startswith(("https://", "http://")):
        return url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a malformed authority: keep only what precedes it
        return url.split("://", 1)[0] + "://[invalid url]"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if port is not None:
        host = f"{host}:{port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def scrub_urls(text: str) -> str:
    """``text`` with every http(s) URL in it replaced by its :func:`public_url`."""
    return _URL.sub(_public_match, text)


def _public_match(match: re.Match[str]) -> str:
    url, tail = match.group(0), ""
    while url and url[-1] in ".,;:!)]":  # sentence punctuation after the URL stays
        url, tail = url[:-1], url[-1] + tail
    return public_url(url) + tail
