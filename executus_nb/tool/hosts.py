"""One host canonicalisation, shared by the policy's ``host=`` rules, the SSRF guard and the fetcher.

A host rule, the guard and the connection must all read the same host from a
URL, or a spelling one of them maps differently (``www。evil。example``,
full-width letters, ``%65vil``, a soft hyphen) slips past a rule and reaches the
host it names.  So the URL is split with httpx's own regular expressions, the
host is canonicalised here once, and the fetcher connects to exactly that
canonical host.

Canonical form, after the WHATWG URL host parser: percent-decoded (UTF-8),
UTS-46 mapped (IDNA 2008, non-transitional: case, full-width forms, the
ideographic dots, ignored code points such as U+00AD), IDNA-encoded to ASCII,
trailing dot dropped; an IPv4 in any spelling a resolver accepts becomes
dotted decimal and an IPv6 literal its compressed form.  A host that cannot be
canonicalised raises ``SSRFBlocked``.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from urllib.parse import unquote_to_bytes

import httpx
import idna

# The exact expressions httpx splits URLs with (private, but pinned by the
# tests in tests/test_hosts.py): reusing them is what makes our split and
# httpx's agree, including for hosts httpx itself would refuse.
from httpx._urlparse import AUTHORITY_REGEX, URL_REGEX

from executus_nb.errors import SSRFBlocked

__all__ = ["canonical_host", "canonical_url", "host_pattern", "ipv4_literal", "url_host"]

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?"
_CANONICAL_NAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_GLOB = re.compile(r"[*?\[\]]")
# C0 controls and space, which the WHATWG URL parser strips from both ends.
_STRIP = "".join(chr(c) for c in range(0x21))


def url_host(url: str) -> str | None:
    """The canonical host of ``url``, or ``None`` if it has no authority (``mailto:x``, ``/path``)."""
    _, host, _ = _split(url)
    return canonical_host(host, url=url) if host else None


def canonical_url(url: str | httpx.URL) -> httpx.URL:
    """Parse ``url`` with httpx after putting the canonical host in place of the one written."""
    text = str(url)
    head, host, tail = _split(text)
    if host:  # no host at all is for the caller to refuse, after the scheme
        canonical = canonical_host(host, url=text)
        text = head + (f"[{canonical}]" if ":" in canonical else canonical) + tail
    try:
        return httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise SSRFBlocked(str(url), f"invalid URL: {exc}") from None


def canonical_host(host: str, *, url: str | None = None) -> str:
    """The canonical ASCII form of ``host`` (see the module docstring); ``SSRFBlocked`` if there is none."""
    where = host if url is None else url
    if host.startswith("[") and host.endswith("]"):
        return _ipv6(host[1:-1], where)
    text = _canonical_name(host, where)
    v4 = ipv4_literal(text, where)
    return text if v4 is None else str(v4)


def _canonical_name(host: str, where: str) -> str:
    """Percent-decode, UTS-46 map and IDNA-encode a host name; no IP-literal handling."""
    try:
        text = unquote_to_bytes(host).decode("utf-8")
    except UnicodeDecodeError:
        raise SSRFBlocked(where, f"host {host!r} percent-encodes bytes that are not UTF-8") from None
    if not text.isascii():
        try:
            text = idna.encode(text, uts46=True, std3_rules=False).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError) as exc:
            raise SSRFBlocked(where, f"host {host!r} is not a valid internationalised name: {exc}") from None
    text = text.lower()
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise SSRFBlocked(where, "URL has no host")
    if len(text) > 253 or not _CANONICAL_NAME.match(text) or any(len(label) > 63 for label in text.split(".")):
        raise SSRFBlocked(where, f"host {host!r} contains characters not allowed in a host name")
    return text


@functools.lru_cache(maxsize=1024)
def host_pattern(pattern: str) -> str:
    """A policy host glob in canonical form: each literal label canonicalised, glob labels lower-cased.

    Raises ``SSRFBlocked`` for a pattern whose literal labels are not host names.
    """
    text = pattern.strip()
    if ":" in text:  # an IPv6 literal, with or without brackets; no globs there
        return _ipv6(text.removeprefix("[").removesuffix("]"), pattern)
    if not _GLOB.search(text):
        return canonical_host(text, url=pattern)
    labels = text.translate({0x3002: ".", 0xFF0E: ".", 0xFF61: "."}).split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    out = []
    for label in labels:
        if _GLOB.search(label):
            if not label.isascii():
                raise SSRFBlocked(pattern, f"write the non-ASCII label {label!r} in its xn-- form to use a glob")
            out.append(label.lower())
        else:
            out.append(_canonical_name(label, pattern))
    return ".".join(out)


def ipv4_literal(host: str, where: str | None = None) -> ipaddress.IPv4Address | None:
    """Parse every IPv4 spelling a resolver accepts: 127.1, 0x7f.0.0.1, 2130706433, 0177.0.0.1.

    Hand-rolled after the WHATWG URL standard's IPv4 parser: inet_aton accepts
    these forms, ipaddress does not, and a check must see what the resolver
    sees.  A host whose last label is a number is an IPv4 address or invalid.
    """
    labels = host.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    if _ipv4_number(labels[-1]) is None:
        return None
    numbers = [_ipv4_number(label) for label in labels]
    values = [n for n in numbers if n is not None]
    if (
        len(labels) > 4
        or len(values) != len(labels)
        or any(n > 255 for n in values[:-1])
        or values[-1] >= 256 ** (5 - len(values))
    ):
        raise SSRFBlocked(where or host, f"host {host!r} is not a valid IPv4 address")
    total = values[-1]
    for i, n in enumerate(values[:-1]):
        total += n << (8 * (3 - i))
    return ipaddress.IPv4Address(total)


def _ipv4_number(label: str) -> int | None:
    """Parse one IPv4 label as decimal, 0-prefixed octal or 0x-prefixed hex."""
    if label[:2] in ("0x", "0X"):
        digits, base = label[2:], 16
    elif len(label) > 1 and label.startswith("0"):
        digits, base = label[1:], 8
    else:
        digits, base = label, 10
    if digits == "":
        return 0 if base != 10 else None
    try:
        return int(digits, base) if digits.isalnum() and digits.isascii() else None
    except ValueError:
        return None


def _ipv6(inner: str, where: str) -> str:
    """The compressed form of a bracketed IPv6 literal; zone identifiers are refused."""
    if "%" in inner:
        raise SSRFBlocked(where, "IPv6 zone identifiers are not allowed")
    try:
        return str(ipaddress.IPv6Address(inner))
    except ValueError:
        raise SSRFBlocked(where, f"invalid IPv6 address {inner!r}") from None


def _split(url: str) -> tuple[str, str | None, str]:
    """Split ``url`` around its host exactly as httpx does: (before, host or None, after).

    Surrounding spaces and control characters are dropped first (as browsers
    do); a backslash is refused, since browsers read it as "/" and httpx does
    not, so the two would disagree over which host is meant.
    """
    url = url.strip(_STRIP)
    if "\\" in url:
        raise SSRFBlocked(url, "URL contains a backslash, which URL parsers read differently")
    match = URL_REGEX.match(url)
    if match is None or match.group("authority") is None:
        return url, None, ""
    start = match.start("authority")
    authority = AUTHORITY_REGEX.match(match.group("authority"))
    if authority is None:  # pragma: no cover - the expression matches every string
        return url, None, ""
    begin, end = start + authority.start("host"), start + authority.end("host")
    return url[:begin], url[begin:end], url[end:]
