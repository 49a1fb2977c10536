"""SSRF guard for https:// sources: refuse hosts that resolve to internal addresses.

Every address a host resolves to must be globally routable (``is_global``, and not
multicast, reserved or shared/CGNAT), and so must every IPv4 address an IPv6 address
carries: IPv4-mapped (``::ffff:a.b.c.d``), IPv4-compatible (``::a.b.c.d``), IPv4-translated
(``::ffff:0:a.b.c.d``), NAT64 (``64:ff9b::/96``, ``64:ff9b:1::/48``), 6to4 (``2002::/16``)
and Teredo (``2001::/32``: its server and its client). The allow-list may name the host
(exact, case-insensitive) or an IP network containing the address or an address it
carries. Checked for the first URL and for every redirect hop.

:func:`check_url` returns the addresses it checked, and the caller connects to one of
those (DNS pinning): a second lookup by the HTTP client could answer differently (DNS
rebinding) and is never made.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from services.fetcher.errors import FetchFailed
from shared.netguard import Address, allowed, carried, internal

__all__ = ["Address", "carried", "check_host", "check_url", "is_allowed"]

# the rules themselves are shared with the gateway's webhooks (shared/netguard.py)
_internal = internal
_allowed = allowed


def check_url(
    url: str, *, allow: Iterable[str], schemes: tuple[str, ...] = ("https",)
) -> list[Address]:
    """Raise FetchFailed unless ``url`` may be fetched (scheme and every resolved address);
    return the checked addresses (in resolver order, without duplicates) to connect to."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in schemes:
        raise FetchFailed(f"Refused to fetch {url}: only {', '.join(schemes)} URLs are allowed.")
    if not host:
        raise FetchFailed(f"Refused to fetch {url}: it names no host.")
    return check_host(host, parts.port or 443, allow=allow, label=url)


def is_allowed(host: str, address: Address, allow: Iterable[str]) -> bool:
    """True when the allow-list names ``host`` or a network holding ``address`` (or an
    address it carries): an administrator's exception to the guard."""
    return _allowed(host.lower(), address, allow)


def check_host(host: str, port: int, *, allow: Iterable[str], label: str) -> list[Address]:
    """The address rules of :func:`check_url` for a host and port of any protocol (an S3
    endpoint, a database server); ``label`` names the source in messages. Returns the
    checked addresses to connect to (DNS pinning), raises FetchFailed."""
    url, host, allow = label, host.lower(), list(allow)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise FetchFailed(f"Could not resolve the host of {url}.", retryable=True) from None
    checked: list[Address] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if _internal(address) and not _allowed(host, address, allow):
            raise FetchFailed(
                f"Refused to fetch {url}: {host} resolves to the internal address {address}. "
                "Only public hosts may be fetched unless an administrator adds the host to "
                "AIDP_FETCH_ALLOW_HOSTS."
            )
        if address not in checked:
            checked.append(address)
    if not checked:
        raise FetchFailed(f"Could not resolve the host of {url}.", retryable=True)
    return checked
