"""Loopback tests of the web fetch tool: pinning, redirect re-checks, size, decoding and time bounds."""

from __future__ import annotations

import asyncio
import http.server
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest

from executus_nb.errors import SSRFBlocked, ToolError, UserError
from executus_nb.tool import fetch, ssrf
from executus_nb.tool.fetch import FetchResult, fetch_text, html_to_text, pinned_request

LOOPBACK = ["127.0.0.1"]

PAGE = """<!doctype html><html><head><title>Greeting &amp; more</title>
<style>body { color: red }</style><script>alert("hidden")</script></head>
<body><h1>Hello</h1><p>First   paragraph
with <b>bold</b> text.</p><ul><li>one</li><li>two</li></ul>
<noscript>enable js</noscript><p>Caf&eacute;</p></body></html>"""

# Bodies served by /encoded/<name>: the Content-Encoding headers to send and the raw bytes.
# Filled by the ``encoded`` fixture, before any memory is measured.
ENCODED: dict[str, tuple[list[str], bytes]] = {}


class Handler(http.server.BaseHTTPRequestHandler):
    """Routes used by the tests; every request is recorded on the server."""

    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Host")))  # type: ignore[attr-defined]
        port = self.server.server_address[1]
        route = self.path.split("?", 1)[0]
        try:
            if route == "/text":
                self._send(200, "text/plain; charset=utf-8", b"hello world")
            elif route == "/whoami":
                self._send(200, "text/plain", f"{self.server.name} {self.headers.get('Host')}".encode())  # type: ignore[attr-defined]
            elif route == "/html":
                self._send(200, "text/html; charset=utf-8", PAGE.encode())
            elif route == "/big":
                self._send(200, "text/plain", b"a" * 50_000)
            elif route == "/utf8":
                self._send(200, "text/plain; charset=utf-8", "é".encode() * 1000)
            elif route == "/binary":
                self._send(200, "image/png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
            elif route == "/missing":
                self._send(404, "text/plain", b"no such page")
            elif route == "/redirect-ok":
                self._redirect("/text")
            elif route == "/loop":
                self._redirect("/loop")
            elif route == "/redirect-metadata":
                self._redirect("http://169.254.169.254/latest/meta-data/")
            elif route == "/redirect-loopback":
                self._redirect(f"http://127.0.0.2:{port}/text")
            elif route == "/redirect-v6-loopback":
                self._redirect(f"http://[::1]:{port}/text")
            elif route == "/redirect-file":
                self._redirect("file:///etc/passwd")
            elif route == "/redirect-to":
                self._redirect(parse_qs(urlsplit(self.path).query)["to"][0])
            elif route == "/headers":
                self._send(200, "text/plain", f"accept-encoding={self.headers.get('Accept-Encoding')}".encode())
            elif route.startswith("/encoded/"):
                encodings, body = ENCODED[route.removeprefix("/encoded/")]
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                for value in encodings:
                    self.send_header("Content-Encoding", value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif route == "/slow":
                time.sleep(3)
                self._send(200, "text/plain", b"late")
            elif route == "/drip":
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "100")
                self.end_headers()
                for _ in range(50):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
            else:
                self._send(404, "text/plain", b"unknown route")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self._headers_buffer.append(b"Location: " + location.encode() + b"\r\n")  # type: ignore[attr-defined]
        self.send_header("Content-Length", "0")
        self.end_headers()


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True

    def __init__(self, address: tuple[str, int], name: str) -> None:
        super().__init__(address, Handler)
        self.name = name
        self.seen: list[tuple[str, str | None]] = []


def _serve(host: str, port: int = 0, name: str = "good", tls: ssl.SSLContext | None = None) -> Server:
    server = Server((host, port), name)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def _stop(server: Server) -> None:
    server.shutdown()
    server.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    srv = _serve("127.0.0.1")
    yield srv
    _stop(srv)


def _url(server: Server, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
    return f"{scheme}://{host}:{server.server_address[1]}{path}"


def run(coro):  # the tests drive the coroutine themselves so no async plugin is needed
    return asyncio.run(coro)


def test_plain_text_passes_through(server: Server) -> None:
    result = run(fetch_text(_url(server, "/text"), allow_private=LOOPBACK))
    assert result == FetchResult(
        url=_url(server, "/text"),
        final_url=_url(server, "/text"),
        status=200,
        content_type="text/plain",
        text="hello world",
        truncated=False,
    )


def test_html_becomes_readable_text(server: Server) -> None:
    result = run(fetch_text(_url(server, "/html"), allow_private=LOOPBACK))
    assert result.content_type == "text/html"
    assert result.text == "Greeting & more\n\nHello\n\nFirst paragraph with bold text.\n\n- one\n- two\n\nCafé"
    assert "alert" not in result.text and "color" not in result.text and "enable js" not in result.text


def test_html_to_text_keeps_preformatted_text() -> None:
    assert html_to_text("<pre>  a\n    b</pre><p>x <span>y</span></p>") == "  a\n    b\n\nx y"
    assert html_to_text("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>") == "a b\nc d"


@pytest.mark.parametrize(
    "kwargs", [{"max_bytes": 0}, {"timeout_s": 0}, {"max_redirects": -1}], ids=["max-bytes", "timeout", "redirects"]
)
def test_bad_limits_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(UserError):
        run(fetch_text("http://example.com/", **kwargs))


def test_loopback_needs_opt_in(server: Server) -> None:
    with pytest.raises(SSRFBlocked, match="loopback"):
        run(fetch_text(_url(server, "/text")))
    assert server.seen == []


def test_non_2xx_status_is_returned(server: Server) -> None:
    result = run(fetch_text(_url(server, "/missing"), allow_private=LOOPBACK))
    assert (result.status, result.text) == (404, "no such page")


def test_binary_content_is_refused(server: Server) -> None:
    with pytest.raises(ToolError, match="not text"):
        run(fetch_text(_url(server, "/binary"), allow_private=LOOPBACK))


def test_size_cap_truncates(server: Server) -> None:
    result = run(fetch_text(_url(server, "/big"), max_bytes=1000, allow_private=LOOPBACK))
    assert result.truncated is True
    assert result.text == "a" * 1000


def test_size_cap_exactly_at_length_is_not_truncated(server: Server) -> None:
    result = run(fetch_text(_url(server, "/big"), max_bytes=50_000, allow_private=LOOPBACK))
    assert (result.truncated, len(result.text)) == (False, 50_000)


def test_truncation_drops_a_split_character(server: Server) -> None:
    result = run(fetch_text(_url(server, "/utf8"), max_bytes=1001, allow_private=LOOPBACK))
    assert result.truncated is True
    assert result.text == "é" * 500


def test_relative_redirect_is_followed(server: Server) -> None:
    result = run(fetch_text(_url(server, "/redirect-ok"), allow_private=LOOPBACK))
    assert (result.status, result.text, result.final_url) == (200, "hello world", _url(server, "/text"))
    assert [path for path, _ in server.seen] == ["/redirect-ok", "/text"]


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/redirect-metadata", "metadata"),
        ("/redirect-loopback", "loopback"),
        ("/redirect-v6-loopback", "loopback"),
        ("/redirect-file", "scheme"),
    ],
    ids=["metadata", "other-loopback-address", "v6-loopback", "file-scheme"],
)
def test_redirect_target_is_rechecked(server: Server, path: str, reason: str) -> None:
    with pytest.raises(SSRFBlocked, match=reason):
        run(fetch_text(_url(server, path), allow_private=LOOPBACK))
    assert [p for p, _ in server.seen] == [path]  # the refused hop was never requested


def test_redirect_limit(server: Server) -> None:
    with pytest.raises(ToolError, match="redirected more than 3 times"):
        run(fetch_text(_url(server, "/loop"), max_redirects=3, allow_private=LOOPBACK))
    assert len(server.seen) == 4


@pytest.mark.parametrize("path", ["/slow", "/drip"], ids=["no-response", "slow-drip"])
def test_total_time_is_bounded(server: Server, path: str) -> None:
    start = time.monotonic()
    with pytest.raises(ToolError, match=r"longer than 0\.5 s|timed out"):
        run(fetch_text(_url(server, path), timeout_s=0.5, allow_private=LOOPBACK))
    assert time.monotonic() - start < 2.0


class FlakyDNS:
    """Resolves ``pinned.test`` to the checked address once, then elsewhere."""

    def __init__(self, first: str, later: str) -> None:
        self.first, self.later, self.calls = first, later, 0
        self.real = socket.getaddrinfo

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name.rstrip(".") not in ("pinned.test", "other.test"):
            # numeric hosts only: these tests must never query real DNS
            return self.real(name, port, family, type, proto, flags | socket.AI_NUMERICHOST)
        self.calls += 1
        address = self.first if self.calls == 1 else self.later
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]


@pytest.fixture
def evil_twin(server: Server) -> Iterator[Server]:
    """A second server on the same port of another loopback address."""
    try:
        twin = _serve("127.0.0.2", server.server_address[1], name="evil")
    except OSError as exc:
        pytest.skip(f"cannot bind 127.0.0.2: {exc}")
    yield twin
    _stop(twin)


def test_connection_is_pinned_to_checked_address(
    server: Server, evil_twin: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    dns = FlakyDNS(first="127.0.0.1", later="127.0.0.2")
    monkeypatch.setattr(socket, "getaddrinfo", dns)  # process-wide: catches any re-resolution
    port = server.server_address[1]
    result = run(fetch_text(f"http://pinned.test:{port}/whoami", allow_private=["pinned.test"]))
    assert result.text == f"good pinned.test:{port}"  # the original Host header was sent
    assert dns.calls == 1
    assert evil_twin.seen == []


def test_pinned_request_keeps_host_and_sni() -> None:
    checked = ssrf.CheckedURL(
        url=httpx.URL("https://user:pw@example.com:8443/a?b=1#frag"),
        host="example.com",
        port=8443,
        addresses=(ipaddress.ip_address("2606:2800:21f:cb07:6820:80da:af6b:8b2c"),),
    )

    request = pinned_request(checked)
    assert str(request.url) == "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:8443/a?b=1"
    assert request.headers["Host"] == "example.com:8443"
    assert "Authorization" not in request.headers
    assert request.extensions["sni_hostname"] == "example.com"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for pinned.test, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not available")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=pinned.test",
         "-addext", "subjectAltName=DNS:pinned.test", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[tuple[Server, list[str | None]]]:
    cert, key = certificate
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    srv = _serve("127.0.0.1", tls=context)
    yield srv, names
    _stop(srv)


@pytest.mark.parametrize(("host", "ok"), [("pinned.test", True), ("other.test", False)])
def test_https_uses_original_host_for_sni_and_verification(
    tls_server: tuple[Server, list[str | None]],
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    host: str,
    ok: bool,
) -> None:
    server, sni_names = tls_server
    client_context = ssl.create_default_context(cafile=str(certificate[0]))
    monkeypatch.setattr(fetch, "_ssl_context", lambda: client_context)
    monkeypatch.setattr(socket, "getaddrinfo", FlakyDNS(first="127.0.0.1", later="127.0.0.2"))
    url = _url(server, "/whoami", host=host, scheme="https")
    if ok:
        result = run(fetch_text(url, allow_private=[host]))
        assert result.text == f"good {host}:{server.server_address[1]}"
    else:
        with pytest.raises(ToolError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            run(fetch_text(url, allow_private=[host]))
    assert sni_names[:1] == [host]


# -- decoded-size cap (decompression bombs) ------------------------------------------------

BOMB_SIZE = 64 * 1024 * 1024  # what each bomb expands to; old code held all of it in memory


def _compress(chunks: Iterator[bytes], wbits: int) -> bytes:
    """Compress a stream of chunks without ever holding the whole input."""
    z = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return b"".join(z.compress(chunk) for chunk in chunks) + z.flush()


def _letters(total: int) -> Iterator[bytes]:
    block = b"a" * (1024 * 1024)
    for _ in range(total // len(block)):
        yield block


GZIP, ZLIB, RAW = zlib.MAX_WBITS | 16, zlib.MAX_WBITS, -zlib.MAX_WBITS


@pytest.fixture(scope="module")
def encoded() -> Iterator[None]:
    gzip_bomb = _compress(_letters(BOMB_SIZE), GZIP)
    ENCODED.update({
        "gzip-bomb": (["gzip"], gzip_bomb),
        "deflate-bomb": (["deflate"], _compress(_letters(BOMB_SIZE), ZLIB)),
        "raw-deflate-bomb": (["deflate"], _compress(_letters(BOMB_SIZE), RAW)),
        "gzip-gzip": (["gzip, gzip"], _compress(iter([gzip_bomb]), GZIP)),
        "gzip-twice-as-headers": (["gzip", "gzip"], _compress(iter([gzip_bomb]), GZIP)),
        "deflate-gzip": (["deflate, gzip"], _compress(iter([_compress(_letters(BOMB_SIZE), ZLIB)]), GZIP)),
        "identity-gzip-identity": (["identity, gzip", "identity"], _compress(iter([b"hello world"]), GZIP)),
        "gzip-small": (["gzip"], _compress(iter([b"hello world"]), GZIP)),
        "gzip-exact": (["gzip"], _compress(iter([b"b" * 5000]), GZIP)),
        "gzip-corrupt": (["gzip"], b"\x1f\x8b\x08\x00garbage-not-deflate"),
        "br": (["br"], b"\x8b\x05\x80hello world\x03"),
        "zstd": (["zstd"], b"(\xb5/\xfd\x00X\x01\x00hello"),
    })  # fmt: skip
    assert len(ENCODED["gzip-gzip"][1]) < 2000  # a ~1-2 KB page that expands to 64 MB
    yield
    ENCODED.clear()


def _peak(server: Server, path: str, max_bytes: int) -> tuple[object, int]:
    """Fetch ``path`` and return (the result or exception, the peak of traced Python memory meanwhile).

    A first small fetch loads what every process pays once (the TLS context, the thread pool).
    """
    run(fetch_text(_url(server, "/text"), allow_private=LOOPBACK))
    coro = fetch_text(_url(server, path), max_bytes=max_bytes, allow_private=LOOPBACK)
    tracemalloc.start()
    try:
        try:
            result: object = run(coro)
        except Exception as exc:  # noqa: BLE001 — the caller asserts on it
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", ["gzip-gzip", "gzip-twice-as-headers", "deflate-gzip"])
def test_stacked_encodings_are_refused_without_decoding_them(server: Server, encoded: None, name: str) -> None:
    result, peak = _peak(server, f"/encoded/{name}", max_bytes=1000)
    assert isinstance(result, ToolError) and "stacked Content-Encoding" in str(result)
    assert peak < 1024 * 1024, f"peak {peak:,} bytes"  # old code: ~150 MB


@pytest.mark.parametrize("name", ["gzip-bomb", "deflate-bomb", "raw-deflate-bomb"])
@pytest.mark.parametrize("max_bytes", [1000, 1_000_000])
def test_single_layer_bomb_is_decoded_only_up_to_max_bytes(
    server: Server, encoded: None, name: str, max_bytes: int
) -> None:
    result, peak = _peak(server, f"/encoded/{name}", max_bytes=max_bytes)
    assert isinstance(result, FetchResult), result
    assert (result.truncated, result.text) == (True, "a" * max_bytes)
    # The capped buffer, the text made from it, one raw chunk and the event loop; not the
    # 64 MB the body expands to (old code: ~150 MB whatever max_bytes).
    assert peak < 4 * max_bytes + 1024 * 1024, f"peak {peak:,} bytes for max_bytes={max_bytes:,}"


@pytest.mark.parametrize(
    ("name", "max_bytes", "text", "truncated"),
    [
        ("gzip-small", 1000, "hello world", False),
        ("identity-gzip-identity", 1000, "hello world", False),
        ("gzip-exact", 5000, "b" * 5000, False),
        ("gzip-exact", 4999, "b" * 4999, True),
    ],
)
def test_compressed_pages_are_read(
    server: Server, encoded: None, name: str, max_bytes: int, text: str, truncated: bool
) -> None:
    result = run(fetch_text(_url(server, f"/encoded/{name}"), max_bytes=max_bytes, allow_private=LOOPBACK))
    assert (result.text, result.truncated) == (text, truncated)


@pytest.mark.parametrize(("name", "message"), [("gzip-corrupt", "not valid gzip"), ("br", "'br'"), ("zstd", "'zstd'")])
def test_undecodable_bodies_are_a_tool_error(server: Server, encoded: None, name: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        run(fetch_text(_url(server, f"/encoded/{name}"), allow_private=LOOPBACK))


def test_only_decodable_encodings_are_asked_for(server: Server) -> None:
    result = run(fetch_text(_url(server, "/headers"), allow_private=LOOPBACK))
    assert result.text == "accept-encoding=gzip, deflate"


# -- redirects that are not http(s) URLs ----------------------------------------------------


@pytest.mark.parametrize(
    "location",
    [
        "data:text/html,<script>alert(1)</script>",
        "data:text/plain;base64,SGVsbG8=",
        "javascript:alert(1)",
        "mailto:someone@example.com",
        "ftp://example.com/file",
    ],
)
def test_redirect_to_another_scheme_is_refused_with_what_happened(server: Server, location: str) -> None:
    with pytest.raises(SSRFBlocked) as info:
        run(fetch_text(_url(server, "/redirect-to") + "?to=" + quote(location, safe=""), allow_private=LOOPBACK))
    scheme = location.split(":", 1)[0]
    assert isinstance(info.value, ToolError)
    assert f"redirected to a {scheme!r} URL" in info.value.reason
    assert [p.split("?")[0] for p, _ in server.seen] == ["/redirect-to"]


@pytest.mark.parametrize("location", ["http://[::1", "http://exa mple.com:99999999/", "http://ex\u00e4mple.com\u200d/"])
def test_redirect_to_an_unparsable_location_is_a_tool_error(server: Server, location: str) -> None:
    with pytest.raises(ToolError, match="redirected to") as info:
        run(fetch_text(_url(server, "/redirect-to") + "?to=" + quote(location, safe=""), allow_private=LOOPBACK))
    assert not isinstance(info.value, httpx.InvalidURL)
