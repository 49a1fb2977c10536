"""Which network addresses a platform-made request may reach (SSRF rules, one copy).

The fetcher's https:// sources (services/fetcher/ssrf.py) and the gateway's webhooks
(services/gateway/webhooks.py) reach URLs a tenant chose; both use these rules. Every
address a host resolves to must be globally routable (``is_global``, and not multicast,
reserved or shared/CGNAT), and so must every IPv4 address an IPv6 address carries:
IPv4-mapped (``::ffff:a.b.c.d``), IPv4-compatible (``::a.b.c.d``), IPv4-translated
(``::ffff:0:a.b.c.d``), NAT64 (``64:ff9b::/96``, ``64:ff9b:1::/48``), 6to4 (``2002::/16``)
and Teredo (``2001::/32``: its server and its client). An allow-list may name the host
(exact, case-insensitive) or an IP network containing the address or an address it carries.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["Address", "allowed", "carried", "internal"]

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


def internal(address: Address) -> bool:
    """True unless ``address`` and every address it carries are globally routable."""
    encoded = _encoded_ipv4(address)
    if encoded is not None:
        return _not_global(encoded)
    return any(_not_global(a) for a in carried(address))


def allowed(host: str, address: Address, allow: Iterable[str]) -> bool:
    """True when an ``allow`` entry names ``host`` or a network holding ``address`` (or an
    address it carries)."""
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
