"""SSRF guard: decide whether a URL may be fetched on behalf of a model.

A URL passes only if it is ``http``/``https`` and every address its host
resolves to is globally routable.  ``resolve_checked`` returns those checked
addresses so a fetcher can connect to exactly them (no DNS-rebinding window).

Hosts are read by ``executus_nb.tool.hosts`` (the one canonicalisation the
policy and the fetcher use too), so every spelling of a host is judged as the
host the connection reaches.

Private hosts can be opted in with ``allow_private``, a list whose entries are
either host names (``"intranet.example.com"``, matched exactly after the same
canonicalisation) or CIDR networks (``"10.0.0.0/8"``, ``"127.0.0.1"``,
``"fd00::/8"``).  A host-name entry lets that host resolve to any non-global
address; a network entry allows the addresses inside it.  No entry ever unlocks
a cloud metadata address, and an IPv6 address that embeds an IPv4 one
(mapped, compatible, 6to4, NAT64, Teredo) is judged by that IPv4 for every rule.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

from executus_nb.errors import ConfigError, SSRFBlocked
from executus_nb.tool.hosts import canonical_host, canonical_url, ipv4_literal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

__all__ = [
    "CheckedURL",
    "IPAddress",
    "address_block_reason",
    "check_url",
    "embedded_ipv4s",
    "is_metadata",
    "parse_url",
    "resolve_checked",
]

_ALLOWED_SCHEMES = {"http": 80, "https": 443}

# Cloud instance-metadata endpoints.  Most already sit in a blocked range;
# they are listed so the reason names them and so a host-name allow-list
# entry can never unlock them.  168.63.129.16 is Azure's WireServer, which
# looks public but is only reachable from inside Azure.
_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.253",  # AWS DNS resolver
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::23",  # AWS DNS resolver over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (legacy)
        "168.63.129.16",  # Azure WireServer
    )
)

# Explicit tables instead of ipaddress's is_global/is_private: their answers
# changed between Python releases (3.11 misses several IANA special-purpose
# ranges and embedded-IPv4 forms), and a guard must not depend on that.
# Order matters: the first matching entry names the reason.
_V4_BLOCKED: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(net), label)
    for net, label in (
        ("0.0.0.0/8", "unspecified ('this network')"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "carrier-grade NAT (shared)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignment"),
        ("192.0.2.0/24", "documentation (TEST-NET-1)"),
        ("192.88.99.0/24", "deprecated 6to4 relay anycast"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation (TEST-NET-2)"),
        ("203.0.113.0/24", "documentation (TEST-NET-3)"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
    )
)

_V6_BLOCKED: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(net), label)
    for net, label in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "deprecated IPv4-compatible"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("100:0:0:1::/64", "dummy prefix"),
        ("2001:db8::/32", "documentation"),
        # Teredo, ORCHID, benchmarking and other protocol assignments; a few
        # anycast services in here are global, but none is a web server.
        ("2001::/23", "IETF protocol assignment"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "segment-routing SID"),
        ("fc00::/7", "unique-local (private)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "deprecated site-local"),
        ("ff00::/8", "multicast"),
    )
)
_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_V4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765 (SIIT) IPv4-translated
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
_TEREDO = ipaddress.IPv6Network("2001::/32")
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")


@dataclass(frozen=True)
class CheckedURL:
    """A URL that passed the guard, with the addresses it may be fetched from."""

    url: httpx.URL
    host: str  # ASCII host as sent on the wire: IDNA-encoded, no IPv6 brackets
    port: int
    addresses: tuple[IPAddress, ...]


def parse_url(url: str | httpx.URL) -> httpx.URL:
    """Parse ``url`` with httpx's own parser, its host in canonical form (see ``hosts``)."""
    return canonical_url(url)


def embedded_ipv4s(ip: IPAddress) -> tuple[ipaddress.IPv4Address, ...]:
    """Every IPv4 address an IPv6 transition form carries (none for other addresses).

    Mapped ``::ffff:a.b.c.d``, translated ``::ffff:0:a.b.c.d``, compatible ``::a.b.c.d``, 6to4 ``2002:AABB:CCDD::``,
    NAT64 ``64:ff9b::/96``, local-use NAT64 ``64:ff9b:1::/48`` (at each RFC 6052
    position its prefix allows) and Teredo (server and de-obfuscated client).
    """
    if not isinstance(ip, ipaddress.IPv6Address):
        return ()
    n = int(ip)

    def v4(value: int) -> ipaddress.IPv4Address:
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)

    if ip in _V4_MAPPED or ip in _V4_TRANSLATED or ip in _NAT64:
        return (v4(n),)
    if ip in _V4_COMPATIBLE:
        return (v4(n),) if n > 1 else ()  # ::a.b.c.d, but not :: or ::1
    if ip in _SIX_TO_FOUR:
        return (v4(n >> 80),)
    if ip in _TEREDO:
        return (v4(n >> 32), v4(~n))
    if ip in _NAT64_LOCAL:  # RFC 6052 §2.2: prefix lengths 48, 56, 64 and 96 (bits 64-71 are zero)
        return tuple(dict.fromkeys((
            v4(((n >> 64) & 0xFFFF) << 16 | (n >> 40) & 0xFFFF),
            v4(((n >> 64) & 0xFF) << 24 | (n >> 32) & 0xFFFFFF),
            v4(n >> 24),
            v4(n),
        )))  # fmt: skip
    return ()


def is_metadata(ip: IPAddress) -> bool:
    """True for a cloud metadata address, in any IPv6 form that embeds one."""
    return ip in _METADATA or any(inner in _METADATA for inner in embedded_ipv4s(ip))


def address_block_reason(ip: IPAddress) -> str | None:
    """Say why ``ip`` is not a globally routable address, or ``None`` if it is."""
    if ip in _METADATA:
        return "a cloud metadata address"
    for inner in embedded_ipv4s(ip):
        if inner in _METADATA:
            return f"an IPv6 form of {inner}, a cloud metadata address"
    if isinstance(ip, ipaddress.IPv4Address):
        for net, label in _V4_BLOCKED:
            if ip in net:
                return f"a {label} address"
        return None
    # Teredo and local-use NAT64 are blocked whole below; only the metadata check needs their IPv4s.
    for inner in () if ip in _TEREDO or ip in _NAT64_LOCAL else embedded_ipv4s(ip):
        inner_reason = address_block_reason(inner)
        if inner_reason is not None:
            return f"an IPv6 form of {inner}, {inner_reason}"
    for net6, label in _V6_BLOCKED:
        if ip in net6:
            return f"a {label} address"
    if ip not in _V6_GLOBAL_UNICAST and not (ip in _V4_MAPPED or ip in _NAT64):
        return "a reserved address (outside 2000::/3)"
    return None


def check_url(url: str | httpx.URL, *, allow_private: Iterable[str] = ()) -> None:
    """Raise ``SSRFBlocked`` unless ``url`` may be fetched (see module docstring)."""
    resolve_checked(url, allow_private=allow_private)


def resolve_checked(url: str | httpx.URL, *, allow_private: Iterable[str] = ()) -> CheckedURL:
    """Check ``url`` and return it with every address its host resolved to.

    Raises ``SSRFBlocked`` if the URL is malformed, not http(s), unresolvable,
    or if any resolved address is not globally routable and not allow-listed.
    """
    text = str(url)
    parsed = parse_url(url)
    names, networks = _parse_allow_list(allow_private)
    if parsed.scheme not in _ALLOWED_SCHEMES:
        raise SSRFBlocked(text, f"scheme {parsed.scheme!r} is not http or https")
    host = parsed.raw_host.decode("ascii")  # already canonical: lower case, IDNA, no trailing dot
    if not host:
        raise SSRFBlocked(text, "URL has no host")
    port = parsed.port if parsed.port is not None else _ALLOWED_SCHEMES[parsed.scheme]
    if not 0 < port < 65536:
        raise SSRFBlocked(text, f"port {port} is out of range")

    literal = _literal_address(host)
    addresses = (literal,) if literal is not None else _resolve(text, host, port)
    host_allowed = host in names
    for ip in addresses:
        reason = address_block_reason(ip)
        if reason is None:
            continue
        where = f"{ip} is" if literal is not None else f"host {host!r} resolves to {ip},"
        if is_metadata(ip) and (names or networks):  # no allow-list entry unlocks these, in any spelling
            raise SSRFBlocked(text, f"{where} {reason}, which allow_private never unlocks")
        if not is_metadata(ip) and (host_allowed or _in_networks(ip, networks)):
            continue
        raise SSRFBlocked(text, f"{where} {reason} (not globally routable)")
    return CheckedURL(url=parsed, host=host, port=port, addresses=addresses)


def _literal_address(host: str) -> IPAddress | None:
    """Return the address a canonical IP-literal host spells, or ``None`` for a DNS name.

    ``hosts`` already turned every IPv4 spelling (127.1, 0x7f.0.0.1, …) into
    dotted decimal and refused IPv6 zone identifiers.
    """
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _resolve(url: str, host: str, port: int) -> tuple[IPAddress, ...]:
    """Resolve ``host`` with the system resolver; failure to resolve blocks the URL."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise SSRFBlocked(url, f"could not resolve host {host!r}: {exc}") from None
    found: list[IPAddress] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        try:
            ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        except ValueError:
            raise SSRFBlocked(url, f"resolver returned a non-IP address {sockaddr[0]!r}") from None
        if ip not in found:
            found.append(ip)
    if not found:
        raise SSRFBlocked(url, f"host {host!r} resolved to no addresses")
    return tuple(found)


def _parse_allow_list(entries: Iterable[str]) -> tuple[frozenset[str], tuple[IPNetwork, ...]]:
    """Split allow-list entries into canonical host names and IP networks."""
    if isinstance(entries, str):
        entries = [entries]
    names: set[str] = set()
    networks: list[IPNetwork] = []
    for entry in entries:
        entry = entry.strip()
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
            continue
        except ValueError:
            pass
        try:
            name = canonical_host(entry)
            is_name = ":" not in name and ipv4_literal(name) is None
        except SSRFBlocked:
            is_name = False
        if not is_name:
            raise ConfigError(
                f"allow_private entry {entry!r} is neither a host name nor a CIDR network; "
                "use e.g. 'intranet.example.com' or '10.0.0.0/8'"
            )
        names.add(name)
    return frozenset(names), tuple(networks)


def _in_networks(ip: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    """True if ``ip`` lies in an allowed network; an IPv6 form of IPv4 is judged by the IPv4 it embeds."""
    candidates: tuple[IPAddress, ...] = embedded_ipv4s(ip) or (ip,)
    return all(any(c.version == n.version and c in n for n in networks) for c in candidates)
