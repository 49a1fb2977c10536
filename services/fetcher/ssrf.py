"""SSRF guard for https:// sources: refuse hosts that resolve to internal addresses.

Every address a host resolves to must be public (not private, loopback, link-local,
multicast, reserved, unspecified or shared/CGNAT), unless the allow-list names the host
(exact, case-insensitive) or an IP network containing the address. Checked for the first
URL and for every redirect hop.

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

__all__ = ["Address", "check_url"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.ip_network("100.64.0.0/10")


def _internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT)
    )


def _allowed(
    host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address, allow: Iterable[str]
) -> bool:
    for entry in allow:
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == host:
            return True
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def check_url(
    url: str, *, allow: Iterable[str], schemes: tuple[str, ...] = ("https",)
) -> list[Address]:
    """Raise FetchFailed unless ``url`` may be fetched (scheme and every resolved address);
    return the checked addresses (in resolver order, without duplicates) to connect to."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    allow = list(allow)
    if parts.scheme not in schemes:
        raise FetchFailed(f"Refused to fetch {url}: only {', '.join(schemes)} URLs are allowed.")
    if not host:
        raise FetchFailed(f"Refused to fetch {url}: it names no host.")
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
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
