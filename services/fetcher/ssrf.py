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

__all__ = ["Address", "carried", "check_url"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known prefix (64:ff9b:1::/48 is local)
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")


def _encoded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 *encoding* of it stands for (mapped, compatible, translated,
    NAT64), else None; such an IPv6 address is judged by that IPv4 address alone."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if int(address) >> 32 == 0 and int(address) > 1:  # ::a.b.c.d (not :: or ::1)
        return ipaddress.IPv4Address(int(address))
    if address in _IPV4_TRANSLATED or address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def carried(address: Address) -> list[Address]:
    """``address`` and every IPv4 address it carries (see the module doc)."""
    found: list[Address] = [address]
    if isinstance(address, ipaddress.IPv4Address):
        return found
    encoded = _encoded_ipv4(address)
    if encoded is not None:
        found.append(encoded)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    return found


def _not_global(address: Address) -> bool:
    return (
        not address.is_global
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address.is_loopback
        or address.is_link_local
        or address.is_private
        or (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT)
    )


def _internal(address: Address) -> bool:
    """True unless ``address`` and every address it carries are globally routable."""
    encoded = _encoded_ipv4(address)
    if encoded is not None:
        return _not_global(encoded)
    return any(_not_global(a) for a in carried(address))


def _allowed(host: str, address: Address, allow: Iterable[str]) -> bool:
    addresses = carried(address)
    for entry in allow:
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == host:
            return True
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            continue
        if any(a.version == network.version and a in network for a in addresses):
            return True
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
