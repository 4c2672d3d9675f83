"""Table-driven tests of the SSRF guard; name resolution is faked, nothing leaves the host."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from executus_nb.errors import ConfigError, SSRFBlocked
from executus_nb.tool import ssrf
from executus_nb.tool.ssrf import address_block_reason, check_url, resolve_checked

PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"

# The fake DNS zone.  Names not listed here fail to resolve; numeric hosts go
# to the real resolver with AI_NUMERICHOST, which never sends a query.
ZONE: dict[str, list[str]] = {
    "example.com": [PUBLIC_V4],
    "xn--mnchen-3ya.de": [PUBLIC_V4],
    "v6.test": [PUBLIC_V6],
    "dual.test": [PUBLIC_V4, PUBLIC_V6],
    "localhost": ["127.0.0.1", "::1"],
    "six-loopback.test": ["::1"],
    "mapped.test": ["::ffff:127.0.0.1"],
    "mixed.test": [PUBLIC_V4, "10.0.0.5"],
    "mixed6.test": [PUBLIC_V6, "fe80::1%1"],
    "meta.test": ["169.254.169.254"],
    "intranet.example.com": ["10.1.2.3"],
    "intranet-meta.test": ["169.254.169.254"],
    "meta6.test": ["::ffff:169.254.169.254"],
    "evil.test": ["10.9.9.9"],
    "xn--intrnet-8wa.test": ["192.168.7.7"],
}
_real_getaddrinfo = socket.getaddrinfo


def fake_getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    """Answer from ZONE; numeric hosts are parsed locally, other names fail."""
    name = host.decode() if isinstance(host, bytes) else str(host)
    records = ZONE.get(name.lower().rstrip("."))
    if records is None:
        return _real_getaddrinfo(name, port, family, type, proto, flags | socket.AI_NUMERICHOST)
    out = []
    for addr in records:
        if ":" in addr:
            out.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (addr, port, 0, 0)))
        else:
            out.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (addr, port)))
    return out


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssrf.socket, "getaddrinfo", fake_getaddrinfo)


BLOCKED = [
    # scheme and shape
    ("ftp", "ftp://example.com/", "scheme"),
    ("file", "file:///etc/passwd", "scheme"),
    ("javascript", "javascript:alert(1)", "scheme"),
    ("gopher", "gopher://example.com:70/", "scheme"),
    ("no-scheme", "example.com/path", "scheme"),
    ("scheme-relative", "//example.com/", "scheme"),
    ("empty-host", "http:///path", "no host"),
    ("empty-authority", "http://", "no host"),
    ("single-slash", "http:/example.com/", "no host"),
    ("port-too-big", "http://example.com:99999/", "port"),
    ("port-zero", "http://example.com:0/", "port"),
    ("space-in-host", "http://a b.example.com/", "characters"),
    ("percent-host", "http://%31%32%37.0.0.1/", "loopback"),  # percent-decoded, as browsers do
    ("tab", "http://exa\tmple.com/", "characters"),
    # userinfo and backslash tricks
    ("userinfo-then-loopback", "http://evil@127.0.0.1/", "loopback"),
    ("public-userinfo-loopback-host", "http://example.com@127.0.0.1/", "loopback"),
    ("userinfo-password", "http://user:pass@localhost:8888/", "loopback"),
    ("backslash-before-at", "http://127.0.0.1\\@example.com/", "backslash"),
    ("backslash-after-host", "http://example.com\\@127.0.0.1/", "backslash"),
    ("backslash-authority", "http:\\\\127.0.0.1\\", "backslash"),
    # loopback and its spellings
    ("loopback", "http://127.0.0.1/", "loopback"),
    ("loopback-high", "http://127.255.255.254:8080/", "loopback"),
    ("localhost", "http://localhost/", "loopback"),
    ("localhost-upper-dot", "http://LOCALHOST./", "loopback"),
    ("loopback-v6", "http://[::1]/", "loopback"),
    ("decimal", "http://2130706433/", "loopback"),
    ("hex-dword", "http://0x7f000001/", "loopback"),
    ("hex-dotted", "http://0x7f.0.0.1/", "loopback"),
    ("hex-upper", "http://0X7F.1/", "loopback"),
    ("octal-dotted", "http://0177.0.0.1/", ""),  # httpx refuses it outright
    ("octal-short", "http://0177.1/", "loopback"),
    ("octal-dword", "http://017700000001/", "loopback"),
    ("short-two", "http://127.1/", "loopback"),
    ("short-three", "http://127.0.1/", "loopback"),
    ("trailing-dot", "http://127.0.0.1./", "loopback"),
    ("zero", "http://0/", "unspecified"),
    ("hex-zero", "http://0x0/", "unspecified"),
    ("fullwidth-digits", "http://１２７．０．０．１/", ""),
    ("ideographic-dots", "http://127。0。0。1/", "loopback"),
    ("enclosed-letter", "http://ⓛocalhost/", ""),
    ("too-many-labels", "http://1.2.3.4.5/", "not a valid IPv4"),
    ("label-too-big", "http://1.2.3.0x100/", "not a valid IPv4"),
    ("bad-octal", "http://09.1/", "not a valid IPv4"),
    # IPv4 ranges
    ("private-10", "http://10.0.0.1/", "private"),
    ("private-172", "http://172.16.0.1/", "private"),
    ("private-172-top", "http://172.31.255.255/", "private"),
    ("private-192", "http://192.168.1.1/", "private"),
    ("link-local", "http://169.254.1.1/", "link-local"),
    ("cgnat", "http://100.64.0.1/", "carrier-grade NAT"),
    ("cgnat-top", "http://100.127.255.254/", "carrier-grade NAT"),
    ("multicast", "http://224.0.0.1/", "multicast"),
    ("ssdp", "http://239.255.255.250:1900/", "multicast"),
    ("reserved", "http://240.0.0.1/", "reserved"),
    ("broadcast", "http://255.255.255.255/", "broadcast"),
    ("unspecified", "http://0.0.0.0/", "unspecified"),
    ("this-network", "http://0.1.2.3/", "unspecified"),
    ("benchmark", "http://198.18.0.1/", "benchmarking"),
    ("benchmark-top", "http://198.19.255.255/", "benchmarking"),
    ("test-net-1", "http://192.0.2.1/", "documentation"),
    ("test-net-2", "http://198.51.100.7/", "documentation"),
    ("test-net-3", "http://203.0.113.9/", "documentation"),
    ("ietf-192-0-0", "http://192.0.0.8/", "IETF"),
    ("6to4-relay", "http://192.88.99.1/", "6to4 relay"),
    # cloud metadata
    ("metadata-aws", "http://169.254.169.254/latest/meta-data/", "metadata"),
    ("metadata-ecs", "http://169.254.170.2/v2/credentials", "metadata"),
    ("metadata-aws-v6", "http://[fd00:ec2::254]/", "metadata"),
    ("metadata-alibaba", "http://100.100.100.200/", "metadata"),
    ("metadata-azure-wireserver", "http://168.63.129.16/", "metadata"),
    ("metadata-decimal", "http://2852039166/", "metadata"),
    ("metadata-by-name", "http://meta.test/", "metadata"),
    # IPv6 ranges
    ("v6-unspecified", "http://[::]/", "unspecified"),
    ("v6-ula", "http://[fc00::1]/", "unique-local"),
    ("v6-ula-fd", "http://[fd12:3456::1]/", "unique-local"),
    ("v6-link-local", "http://[fe80::1]/", "link-local"),
    ("v6-zone", "http://[fe80::1%25eth0]/", "zone"),
    ("v6-site-local", "http://[fec0::1]/", "site-local"),
    ("v6-multicast", "http://[ff02::1]/", "multicast"),
    ("v6-documentation", "http://[2001:db8::1]/", "documentation"),
    ("v6-documentation-3fff", "http://[3fff::1]/", "documentation"),
    ("v6-teredo", "http://[2001::1]/", "IETF"),
    ("v6-discard", "http://[100::1]/", "discard"),
    ("v6-local-nat64", "http://[64:ff9b:1::1]/", "local-use NAT64"),
    ("v6-unallocated", "http://[4000::1]/", "outside 2000::/3"),
    # IPv4 embedded in IPv6
    ("mapped-loopback", "http://[::ffff:127.0.0.1]/", "loopback"),
    ("mapped-loopback-hex", "http://[::ffff:7f00:1]/", "loopback"),
    ("mapped-private", "http://[::ffff:10.0.0.1]/", "private"),
    ("mapped-metadata", "http://[::ffff:169.254.169.254]/", "metadata"),
    ("mapped-unspecified", "http://[::ffff:0.0.0.0]/", "unspecified"),
    ("compat-loopback", "http://[::127.0.0.1]/", "loopback"),
    ("compat-loopback-hex", "http://[::7f00:1]/", "loopback"),
    ("compat-private", "http://[::10.0.0.1]/", "private"),
    ("compat-public", f"http://[::{PUBLIC_V4}]/", "IPv4-compatible"),
    ("6to4-loopback", "http://[2002:7f00:1::]/", "loopback"),
    ("6to4-metadata", "http://[2002:a9fe:a9fe::1]/", "metadata"),
    ("6to4-private", "http://[2002:c0a8:101::1]/", "private"),
    ("nat64-loopback", "http://[64:ff9b::127.0.0.1]/", "loopback"),
    ("nat64-metadata", "http://[64:ff9b::a9fe:a9fe]/", "metadata"),
    ("nat64-private", "http://[64:ff9b::10.0.0.1]/", "private"),
    # DNS answers
    ("unresolvable", "http://no-such-host.test/", "could not resolve"),
    ("one-public-one-private", "http://mixed.test/", "10.0.0.5"),
    ("one-public-one-link-local-v6", "http://mixed6.test/", "fe80::1"),
    ("name-to-v6-loopback", "http://six-loopback.test/", "loopback"),
    ("name-to-mapped-loopback", "http://mapped.test/", "loopback"),
    ("intranet-without-opt-in", "http://intranet.example.com/", "private"),
]


@pytest.mark.parametrize(("url", "reason"), [pytest.param(u, r, id=i) for i, u, r in BLOCKED])
def test_blocked(url: str, reason: str) -> None:
    with pytest.raises(SSRFBlocked) as info:
        check_url(url)
    assert reason in info.value.reason
    assert info.value.url == url


ALLOWED = [
    ("plain", "http://example.com/", [PUBLIC_V4]),
    ("https-port-query", "https://example.com:8443/path?q=1#frag", [PUBLIC_V4]),
    ("upper-trailing-dot", "HTTP://EXAMPLE.COM./", [PUBLIC_V4]),
    ("userinfo-on-public", "http://evil@example.com/", [PUBLIC_V4]),
    ("loopback-as-userinfo", "http://127.0.0.1@example.com/", [PUBLIC_V4]),
    ("public-literal", f"http://{PUBLIC_V4}/", [PUBLIC_V4]),
    ("public-hex", "http://0x5d.0xb8.0xd7.0x0e/", [PUBLIC_V4]),
    ("public-v6-literal", f"http://[{PUBLIC_V6}]/", [PUBLIC_V6]),
    ("public-v6-name", "http://v6.test/", [PUBLIC_V6]),
    ("dual-stack", "http://dual.test/", [PUBLIC_V4, PUBLIC_V6]),
    ("mapped-public", f"http://[::ffff:{PUBLIC_V4}]/", [f"::ffff:{PUBLIC_V4}"]),
    ("nat64-public", f"http://[64:ff9b::{PUBLIC_V4}]/", [f"64:ff9b::{PUBLIC_V4}"]),
    ("6to4-public", "http://[2002:5db8:d70e::1]/", ["2002:5db8:d70e::1"]),
    ("as112-global", "http://192.31.196.1/", ["192.31.196.1"]),
    ("idna", "http://münchen.de/", [PUBLIC_V4]),
]


@pytest.mark.parametrize(("url", "addresses"), [pytest.param(u, a, id=i) for i, u, a in ALLOWED])
def test_allowed(url: str, addresses: list[str]) -> None:
    check_url(url)
    checked = resolve_checked(url)
    assert checked.addresses == tuple(ipaddress.ip_address(a) for a in addresses)


def test_resolve_checked_reports_host_and_port() -> None:
    checked = resolve_checked("https://user:pw@münchen.de:8443/x")
    assert checked.host == "xn--mnchen-3ya.de"
    assert checked.port == 8443
    assert checked.url.scheme == "https"
    assert resolve_checked("http://example.com/").port == 80


ALLOW_LIST = [
    ("name-opt-in", "http://intranet.example.com/", ["intranet.example.com"], True),
    ("name-opt-in-normalised", "http://intranet.example.com/", ["INTRANET.Example.com."], True),
    ("name-opt-in-idna", "http://intränet.test/", ["INTRÄNET.test"], True),
    ("idna-without-opt-in", "http://intränet.test/", [], False),
    ("name-opt-in-other-host", "http://evil.test/", ["intranet.example.com"], False),
    ("cidr-opt-in", "http://10.1.2.3/", ["10.0.0.0/8"], True),
    ("cidr-opt-in-by-name", "http://intranet.example.com/", ["10.0.0.0/8"], True),
    ("cidr-other-range", "http://10.1.2.3/", ["192.168.0.0/16"], False),
    ("single-address", "http://127.0.0.1:8080/", ["127.0.0.1"], True),
    ("single-address-neighbour", "http://127.0.0.2:8080/", ["127.0.0.1"], False),
    ("string-not-list", "http://10.1.2.3/", "10.0.0.0/8", True),
    ("localhost-by-name", "http://localhost/", ["localhost"], True),
    ("localhost-v4-only-cidr", "http://localhost/", ["127.0.0.0/8"], False),  # ::1 is not allowed
    ("localhost-both-cidrs", "http://localhost/", ["127.0.0.0/8", "::1"], True),
    ("mapped-in-cidr", "http://[::ffff:10.1.2.3]/", ["10.0.0.0/8"], True),
    ("metadata-not-unlocked-by-private-cidr", "http://169.254.169.254/", ["10.0.0.0/8"], False),
    ("metadata-not-unlocked-by-name", "http://intranet-meta.test/", ["intranet-meta.test"], False),
    ("metadata-not-unlocked-by-explicit-cidr", "http://169.254.169.254/", ["169.254.169.254/32"], False),
    ("scheme-still-checked", "ftp://intranet.example.com/", ["intranet.example.com"], False),
    # an IPv6 form of IPv4 is judged by its IPv4, for allow-lists too
    ("nat64-in-v4-cidr", "http://[64:ff9b::10.1.2.3]/", ["10.0.0.0/8"], True),
    ("6to4-in-v4-cidr", "http://[2002:c0a8:101::1]/", ["192.168.0.0/16"], True),
    ("mapped-not-unlocked-by-v6-cidr", "http://[::ffff:10.0.0.1]/", ["::ffff:0:0/96"], False),
    ("6to4-not-unlocked-by-6to4-cidr", "http://[2002:c0a8:101::1]/", ["2002::/16"], False),
    ("nat64-not-unlocked-by-nat64-cidr", "http://[64:ff9b::10.0.0.1]/", ["64:ff9b::/96"], False),
    ("mapped-metadata-not-unlocked-by-name", "http://meta6.test/", ["meta6.test"], False),
]


@pytest.mark.parametrize(("url", "allow", "ok"), [pytest.param(u, a, ok, id=i) for i, u, a, ok in ALLOW_LIST])
def test_allow_private(url: str, allow: list[str] | str, ok: bool) -> None:
    if ok:
        check_url(url, allow_private=allow)
    else:
        with pytest.raises(SSRFBlocked):
            check_url(url, allow_private=allow)


@pytest.mark.parametrize(
    "entry",
    ["not a host!", "http://x/", "", "host:80", "１２７．０．０．１"],
    ids=["spaces", "url", "empty", "port", "fullwidth"],
)
def test_allow_private_rejects_bad_entries(entry: str) -> None:
    with pytest.raises(ConfigError):
        check_url("http://example.com/", allow_private=[entry])


BLOCKED_V4 = [
    "0.0.0.0", "10.0.0.1", "100.64.0.1", "127.0.0.1", "169.254.169.254", "169.254.1.1", "172.16.0.1",
    "192.0.0.1", "192.0.2.1", "192.168.0.1", "198.18.0.1", "198.51.100.1", "203.0.113.1",
    "224.0.0.1", "240.0.0.1", "255.255.255.255", "100.100.100.200",
]  # fmt: skip


def _embeddings(v4: str) -> dict[str, ipaddress.IPv6Address]:
    n = int(ipaddress.IPv4Address(v4))
    return {
        "mapped": ipaddress.IPv6Address((0xFFFF << 32) | n),
        "compatible": ipaddress.IPv6Address(n),
        "6to4": ipaddress.IPv6Address((0x2002 << 112) | (n << 80) | 1),
        "nat64": ipaddress.IPv6Address((0x64FF9B << 96) | n),
    }


@pytest.mark.parametrize(
    ("form", "ip"),
    [pytest.param(form, ip, id=f"{form}-{v4}") for v4 in BLOCKED_V4 for form, ip in _embeddings(v4).items()],
)
def test_every_blocked_v4_range_is_blocked_in_v6_forms(form: str, ip: ipaddress.IPv6Address) -> None:
    reason = address_block_reason(ip)
    assert reason is not None, f"{form} {ip} passed"


@pytest.mark.parametrize("v4", BLOCKED_V4)
def test_every_blocked_v4_sample_is_blocked(v4: str) -> None:
    assert address_block_reason(ipaddress.IPv4Address(v4)) is not None


@pytest.mark.parametrize(
    ("form", "blocked"),
    [("mapped", False), ("compatible", True), ("6to4", False), ("nat64", False)],
)
def test_public_v4_in_v6_forms(form: str, blocked: bool) -> None:
    assert (address_block_reason(_embeddings(PUBLIC_V4)[form]) is not None) is blocked


SPELLINGS = [
    "127.1", "0x7f.0.0.1", "2130706433", "0177.1", "017700000001", "0x7f000001", "127.0.1", "0", "0x5d.0xb8.55054",
]  # fmt: skip


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_ipv4_spellings_match_inet_aton(spelling: str) -> None:
    """The guard reads each spelling as the C resolver (inet_aton) does."""
    expected = ipaddress.IPv4Address(socket.inet_aton(spelling))
    checked = resolve_checked(f"http://{spelling}/", allow_private=["0.0.0.0/0"])
    assert checked.addresses == (expected,)


def test_rebinding_host_is_checked_on_every_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([PUBLIC_V4, "127.0.0.1"])

    def rebinding(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(ssrf.socket, "getaddrinfo", rebinding)
    first = resolve_checked("http://rebind.test/")
    assert first.addresses == (ipaddress.ip_address(PUBLIC_V4),)  # what a fetcher must pin to
    with pytest.raises(SSRFBlocked, match="loopback"):
        check_url("http://rebind.test/")


def test_resolver_with_no_answers_is_blocked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssrf.socket, "getaddrinfo", lambda *a, **k: [])
    with pytest.raises(SSRFBlocked, match="no addresses"):
        check_url("http://empty.test/")


METADATA_V4 = ["169.254.169.254", "100.100.100.200", "168.63.129.16", "169.254.170.2", "192.0.0.192"]


def _metadata_forms(v4: str) -> dict[str, ipaddress.IPv6Address]:
    """Every IPv6 spelling that carries ``v4``: transition forms and each RFC 6052 NAT64 layout."""
    n = int(ipaddress.IPv4Address(v4))
    local = 0x64FF9B0001 << 80  # 64:ff9b:1::/48
    return {
        **_embeddings(v4),
        "translated": ipaddress.IPv6Address((0xFFFF << 48) | n),  # ::ffff:0:a.b.c.d (SIIT)
        "nat64-local-96": ipaddress.IPv6Address(local | n),
        "nat64-local-64": ipaddress.IPv6Address(local | (n << 24)),
        "nat64-local-56": ipaddress.IPv6Address(local | ((n >> 24) << 64) | ((n & 0xFFFFFF) << 32)),
        "nat64-local-48": ipaddress.IPv6Address(local | ((n >> 16) << 64) | ((n & 0xFFFF) << 40)),
        "teredo-client": ipaddress.IPv6Address((0x20010000 << 96) | (0x01020304 << 64) | (~n & 0xFFFFFFFF)),
    }


# Every allow-list shape a user might write; none of them may unlock a metadata address.
UNLOCKERS = [
    ["0.0.0.0/0", "::/0"], ["169.254.0.0/16", "100.64.0.0/10", "168.63.129.16/32", "192.0.0.0/24"],
    ["::ffff:0:0/96", "::/96", "2002::/16", "64:ff9b::/96", "64:ff9b:1::/48", "2001::/32"],
]  # fmt: skip


@pytest.mark.parametrize("allow", UNLOCKERS, ids=["everything", "v4-ranges", "v6-transition-ranges"])
@pytest.mark.parametrize(
    ("form", "ip"),
    [pytest.param(f, ip, id=f"{f}-{v4}") for v4 in METADATA_V4 for f, ip in _metadata_forms(v4).items()],
)
def test_no_allow_list_unlocks_metadata_in_any_ipv6_form(
    form: str, ip: ipaddress.IPv6Address, allow: list[str]
) -> None:
    with pytest.raises(SSRFBlocked, match="metadata"):
        check_url(f"http://[{ip}]/", allow_private=allow)


@pytest.mark.parametrize("v4", METADATA_V4)
def test_no_allow_list_unlocks_metadata_by_name_or_cidr(v4: str) -> None:
    forms = [v4, *map(str, _metadata_forms(v4).values())]
    zone = {f"m{i}.test": [addr] for i, addr in enumerate(forms)}
    ZONE.update(zone)
    try:
        for name in zone:
            with pytest.raises(SSRFBlocked, match="metadata"):
                check_url(f"http://{name}/", allow_private=[name, f"{v4}/32", "0.0.0.0/0", "::/0"])
    finally:
        for name in zone:
            ZONE.pop(name)


def test_public_addresses_in_transition_forms_stay_allowed() -> None:
    for form in ("mapped", "6to4", "nat64"):
        check_url(f"http://[{_embeddings(PUBLIC_V4)[form]}]/")
    assert ssrf.embedded_ipv4s(ipaddress.IPv6Address(PUBLIC_V6)) == ()
