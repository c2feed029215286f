"""Where PloyD's server may send a request a repository chose (a ``notify:`` webhook, a
Slack URL from a secret): not to its own machine or network. Pure: addresses in, the
class of a refused one (``loopback``, ``link-local``...) out.

Refused unless an operator's network (``PLOYD_NOTIFY_ALLOW_NETS``) holds the address:
unspecified, loopback, link-local (169.254.169.254 is the cloud's metadata service),
private (RFC 1918, fc00::/7, 100.64.0.0/10), multicast, and whatever else is not a
global address (reserved, documentation, benchmarking ranges). An IPv6 address that
carries an IPv4 one (``::ffff:127.0.0.1``, ``::127.0.0.1``, NAT64 ``64:ff9b::/96``,
6to4, Teredo) is judged by the IPv4 address it reaches.

A host written like an IP address (digits and dots, or a colon) must be one in its
canonical form: ``127.1``, ``2130706433`` or ``0177.0.0.1`` would be turned into
127.0.0.1 by the C library, past a check that reads the text."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_SETTING = "PLOYD_NOTIFY_ALLOW_NETS"

_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_V4_COMPAT = ipaddress.ip_network("::/96")
_PRIVATE = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)


def parse_allow_nets(raw: str) -> tuple[Network, ...]:
    """``PLOYD_NOTIFY_ALLOW_NETS``: comma-separated networks (``127.0.0.0/8``, ``fd00::/8``;
    an address alone is its own /32 or /128). ValueError naming the bad entry."""
    out: list[Network] = []
    for part in raw.split(","):
        entry = part.strip()
        if not entry:
            continue
        try:
            out.append(ipaddress.ip_network(entry, strict=True))
        except ValueError as e:
            raise ValueError(
                f"{entry!r} is not a network in CIDR form (like 127.0.0.0/8 or fd00::/8): {e}"
            ) from None
    return tuple(out)


def embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one reaches, for the forms that carry one."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64 or (ip in _V4_COMPAT and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client's address
    return None


def address_class(ip: Address) -> str | None:
    """The class of an address a request may not go to (``"loopback"``...), None for a
    global one."""
    if isinstance(ip, ipaddress.IPv6Address):
        v4 = embedded_v4(ip)
        if v4 is not None:
            return address_class(v4)
        ip = ipaddress.IPv6Address(ip.compressed.split("%")[0])  # the zone says nothing
    if ip.is_unspecified or (isinstance(ip, ipaddress.IPv4Address) and ip.packed[0] == 0):
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip in _SHARED or any(ip in n for n in _PRIVATE):
        return "private"
    if ip.is_reserved or not ip.is_global:
        return "reserved"
    return None


def _allowed(ip: Address, allow: Sequence[Network]) -> bool:
    forms: list[Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        v4 = embedded_v4(ip)
        if v4 is not None:
            forms.append(v4)
    return any(f.version == n.version and f in n for f in forms for n in allow)


def refusal(address: str, allow: Sequence[Network] = (), name: str = "") -> str | None:
    """Why a request may not go to ``address`` (an IP address as a connection would use
    it; ``name``: the host name it was resolved from), or None when it may."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"{address} is not an IP address"
    cls = address_class(ip)
    if cls is None or _allowed(ip, allow):
        return None
    article = "an" if cls[0] in "aeiou" else "a"
    note = " (the cloud's metadata service is one)" if cls == "link-local" else ""
    said = f"{name} resolves to {address}, {article}" if name else f"{address} is {article}"
    return f"{said} {cls} address{note}; {ALLOW_SETTING} allows such networks"


def looks_literal(host: str) -> bool:
    """Whether an HTTP client would take ``host`` for an IP address rather than a name
    (aiohttp's test: a colon, or nothing but digits and dots)."""
    return ":" in host or host.replace(".", "").isdigit()


def host_refusal(host: str, allow: Sequence[Network] = ()) -> str | None:
    """Why a URL's host (brackets removed) may not be connected to, for an IP-literal host;
    None for a name (its addresses are checked when it is resolved)."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not looks_literal(host):
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return f"{host} is not an IP address in its usual form (refused: it could mean another)"
    return refusal(host, allow)


def first_refusal(
    addresses: Iterable[str], allow: Sequence[Network] = (), name: str = ""
) -> str | None:
    for a in addresses:
        why = refusal(a, allow, name)
        if why is not None:
            return why
    return None
