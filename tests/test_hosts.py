"""One host canonicalisation: the policy's host rules, the SSRF guard and the fetcher read every spelling alike."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from executus_nb.errors import ConfigError, SSRFBlocked
from executus_nb.tool import ssrf
from executus_nb.tool.fetch import fetch_text
from executus_nb.tool.hosts import canonical_host, canonical_url, url_host
from executus_nb.tool.policy import Policy
from executus_nb.types.gate import ToolCallRequest
from tests.test_fetch import Server, _serve, _stop


def req(url: object, name: str = "web_fetch") -> ToolCallRequest:
    return ToolCallRequest(
        run_id="r",
        agent="a",
        step=1,
        call_id="c1",
        name=name,
        arguments={"url": url},
        raw_arguments="{}",
        default_permission=None,
    )


# Spellings of www.evil.example that a browser (WHATWG URL, UTS-46) and our fetcher read as that host.
HOSTS = {
    "plain": "www.evil.example",
    "ideographic-dots": "www\u3002evil\u3002example",
    "fullwidth-dots": "www\uff0eevil\uff0eexample",
    "halfwidth-ideographic-dots": "www\uff61evil\uff61example",
    "fullwidth-letters": "\uff57\uff57\uff57.\uff45\uff56\uff49\uff4c.\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45",
    "upper-case": "WWW.EVIL.EXAMPLE",
    "trailing-dot": "www.evil.example.",
    "trailing-ideographic-dot": "www.evil.example\u3002",
    "soft-hyphen": "www.ev\u00adil.example",
    "combining-grapheme-joiner": "www.evil\u034f.example",
    "percent-encoded": "www.%65%76%69%6c.example",
    "percent-encoded-dot": "www%2eevil%2eexample",
    "percent-encoded-fullwidth": "www.%EF%BD%85vil.example",
    "mixed": "WWW\u3002\uff25vil\uff0eexample\uff61",
}
SPELLINGS = {
    **{name: f"http://{host}/" for name, host in HOSTS.items()},
    "userinfo-port-query": "https://user:pw@WWW\u3002\uff25vil\uff0eexample\uff61:8443/path?q=1",
    "surrounding-space": "  http://www.evil.example/\n",
    "upper-scheme": "HTTP://www.evil.example/",
}
# Spellings that cannot be canonicalised: denied by host rules, refused by the guard.
UNREADABLE = {
    "zero-width-joiner": "http://www.ev\u200dil.example/",
    "fullwidth-solidus": "http://www.evil.example\uff0f.good.example/",
    "fullwidth-at": "http://good.example\uff20www.evil.example/",
    "percent-encoded-solidus": "http://www.evil.example%2f.good.example/",
    "invalid-utf8": "http://www.%ff.evil.example/",
    "disallowed-code-point": "http://www.evil\u2028.example/",
    "backslash": "http://good.example\\@www.evil.example/",
    "ipv6-zone": "http://[fe80::1%25eth0]/",
}


@pytest.mark.parametrize("url", list(SPELLINGS.values()), ids=list(SPELLINGS))
def test_deny_rule_denies_every_spelling_of_the_host(url: str) -> None:
    policy = Policy().deny("web_fetch", host="*.evil.example")
    assert policy.evaluate(req(url)) == ("deny", "deny web_fetch host=*.evil.example")


@pytest.mark.parametrize("url", list(SPELLINGS.values()), ids=list(SPELLINGS))
def test_every_spelling_has_one_canonical_host_everywhere(url: str) -> None:
    assert url_host(url) == "www.evil.example"
    assert canonical_url(url).host == "www.evil.example"


@pytest.mark.parametrize("url", list(UNREADABLE.values()), ids=list(UNREADABLE))
def test_a_host_that_cannot_be_canonicalised_is_denied_by_allow_and_deny_rules(url: str) -> None:
    for policy in (
        Policy().deny("web_fetch", host="*.evil.example"),
        Policy(default="deny").allow("web_fetch", host="*.good.example"),
        Policy().allow("web_fetch", host="*"),
    ):
        action, label = policy.evaluate(req(url))
        assert action == "deny" and "unreadable host" in label, (policy, label)
    with pytest.raises(SSRFBlocked):
        ssrf.check_url(url, allow_private=["0.0.0.0/0", "::/0"])


def test_allow_rule_still_allows_every_spelling_and_nothing_else() -> None:
    policy = Policy(default="deny").allow("web_fetch", host="*.good.example")
    assert policy.evaluate(req("https://WWW\u3002good\uff0eexample./x"))[0] == "allow"
    assert policy.evaluate(req("https://www.good.example.evil.example/"))[0] == "deny"
    assert policy.evaluate(req("https://good.example@www.evil.example/"))[0] == "deny"
    assert policy.evaluate(req(12))[0] == "deny"  # not a URL: the rule does not match, the default decides


@pytest.mark.parametrize(
    ("pattern", "url"),
    [
        ("*.b\u00fccher.example", "http://www.xn--bcher-kva.example/"),
        ("*.xn--bcher-kva.example", "http://www.B\u00dcCHER.example/"),
        ("*.\uff25\uff36\uff29\uff2c.example", "http://www.evil.example/"),
        ("www.evil.example.", "http://WWW\u3002EVIL\u3002EXAMPLE/"),
        ("127.0.0.1", "http://0x7f.1/"),
        ("127.0.0.1", "http://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11/"),
        ("[::1]", "http://[0:0:0:0:0:0:0:1]:8080/"),
    ],
)
def test_rule_patterns_are_canonicalised_too(pattern: str, url: str) -> None:
    assert Policy().deny("web_fetch", host=pattern).evaluate(req(url))[0] == "deny"


@pytest.mark.parametrize("pattern", ["evil example", "evil.example/path", "ev\u200dil.example", "*.b\u00fccher*"])
def test_a_pattern_that_is_not_a_host_is_a_config_error(pattern: str) -> None:
    with pytest.raises(ConfigError, match="host="):
        Policy().deny("web_fetch", host=pattern)


# Hosts httpx accepts as they are: our canonical form must be httpx's own (minus the trailing dot).
HTTPX_ACCEPTS = [
    "example.com", "EXAMPLE.com.", "b\u00fccher.example", "www\u3002evil\u3002example", "www.evil.example\uff0e",
    "\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444", "xn--bcher-kva.example", "r3---sn-abc.googlevideo.com",
    "under_score.example", "1.2.3.4", "[::1]", "[2001:db8::1]", "\u4f8b\u3048.\u30c6\u30b9\u30c8",
]  # fmt: skip


@pytest.mark.parametrize("host", HTTPX_ACCEPTS)
def test_canonical_host_agrees_with_httpx(host: str) -> None:
    assert canonical_host(host) == httpx.URL(f"http://{host}/").raw_host.decode("ascii").rstrip(".")


@pytest.mark.parametrize(
    "url",
    [
        "http://user:pa%40ss@example.com:8080/a/b?c=d#e", "https://example.com", "http://example.com:80/",
        "http://[::1]:9000/x", "http://a@b@example.com/", "http://example.com/?next=http://evil.example/",
        "http://example.com#@evil.example/", "http://example.com?@evil.example/", "//example.com/x", "/relative",
    ],
)  # fmt: skip
def test_url_split_agrees_with_httpx(url: str) -> None:
    assert canonical_url(url) == httpx.URL(url)


# -- the fetch reaches the host the rule and the guard judged ---------------------------------


@pytest.fixture
def evil_server(monkeypatch: pytest.MonkeyPatch):
    """A loopback server that www.evil.example resolves to; every other name fails to resolve."""
    srv = _serve("127.0.0.1")
    real = socket.getaddrinfo

    def resolve(host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name == "www.evil.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(name, port, family, type, proto, flags | socket.AI_NUMERICHOST)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    yield srv
    _stop(srv)


@pytest.mark.parametrize("host", list(HOSTS.values()), ids=list(HOSTS))
def test_guard_and_fetch_reach_the_canonical_host(evil_server: Server, host: str) -> None:
    port = evil_server.server_address[1]
    url = f"http://{host}:{port}/whoami"
    checked = ssrf.resolve_checked(url, allow_private=["www.evil.example"])
    assert (checked.host, checked.url.host) == ("www.evil.example", "www.evil.example")
    result = asyncio.run(fetch_text(url, allow_private=["www.evil.example"]))
    assert result.text == f"good www.evil.example:{port}"  # the Host header the server saw
    assert result.final_url == f"http://www.evil.example:{port}/whoami"
    assert evil_server.seen == [("/whoami", f"www.evil.example:{port}")]
