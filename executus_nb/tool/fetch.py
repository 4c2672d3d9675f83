"""Fetch a web page as text for a model, behind the SSRF guard.

Every hop (the first URL and each redirect) is checked by ``ssrf`` and the
connection goes to the exact address that was checked, so DNS rebinding
between check and connect cannot redirect the request to a private host.
The host is the canonical one from ``hosts`` (what the policy and the guard
judged), and the body is decoded by ``encodings`` with the decoded size capped
at ``max_bytes``, whatever its ``Content-Encoding``.
"""

from __future__ import annotations

import codecs
import functools
import re
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser

import anyio
import anyio.to_thread
import httpx

from executus_nb.errors import SSRFBlocked, ToolError, UserError
from executus_nb.tool.encodings import ACCEPT_ENCODING, content_decoder
from executus_nb.tool.ssrf import CheckedURL, parse_url, resolve_checked

__all__ = ["FetchResult", "fetch_text", "html_to_text"]

USER_AGENT = "executus-nb-fetch/1.0"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "application/x-ndjson",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
        "application/x-sh",
    }
)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


@dataclass(frozen=True)
class FetchResult:
    """The text of a fetched page and where it finally came from."""

    url: str
    final_url: str
    status: int
    content_type: str
    text: str
    truncated: bool


async def fetch_text(
    url: str,
    *,
    max_bytes: int = 1_000_000,
    timeout_s: float = 10.0,
    max_redirects: int = 5,
    allow_private: Iterable[str] = (),
) -> FetchResult:
    """GET ``url`` and return its body as text, HTML rendered to readable text.

    Raises ``SSRFBlocked`` if any hop is refused by the guard and ``ToolError``
    on network failure, a non-text body, too many redirects or ``timeout_s``.
    ``allow_private`` is passed to the guard for every hop (see ``ssrf``).
    """
    if max_bytes < 1 or timeout_s <= 0 or max_redirects < 0:
        raise UserError(
            f"fetch_text needs max_bytes >= 1, timeout_s > 0 and max_redirects >= 0; "
            f"got {max_bytes}, {timeout_s}, {max_redirects}"
        )
    allow = (allow_private,) if isinstance(allow_private, str) else tuple(allow_private)
    try:
        # One deadline for the whole fetch: httpx's timeouts are per read, so
        # a server dripping one byte at a time would otherwise never time out.
        with anyio.fail_after(timeout_s):
            return await _fetch(url, max_bytes, timeout_s, max_redirects, allow)
    except TimeoutError:
        raise ToolError(f"fetching {url!r} took longer than {timeout_s:g} s; try again or another URL") from None


async def _fetch(url: str, max_bytes: int, timeout_s: float, max_redirects: int, allow: tuple[str, ...]) -> FetchResult:
    """Follow redirects by hand so each hop is re-checked and pinned."""
    current: str | httpx.URL = url
    for hop in range(max_redirects + 1):
        checked = await anyio.to_thread.run_sync(
            functools.partial(resolve_checked, current, allow_private=allow), abandon_on_cancel=True
        )
        async with _transport() as transport:
            response = await _send_pinned(transport, checked, timeout_s)
            try:
                location = response.headers.get("location")
                if response.status_code in _REDIRECTS and location:
                    if hop == max_redirects:
                        raise ToolError(f"{url!r} redirected more than {max_redirects} times; giving up")
                    current = _redirect_target(checked, location)
                    continue
                return await _read(url, checked, response, max_bytes)
            finally:
                await response.aclose()
    raise AssertionError("unreachable")  # the loop either returns or raises


def _redirect_target(checked: CheckedURL, location: str) -> httpx.URL:
    """The next hop of a redirect; a Location that is not an http(s) URL is refused with what it was."""
    source, shown = str(checked.url), location if len(location) <= 120 else location[:117] + "..."
    try:
        relative = parse_url(location)
    except SSRFBlocked as exc:
        raise SSRFBlocked(shown, f"{source!r} redirected to a URL that cannot be read: {exc.reason}") from None
    if relative.scheme not in ("", "http", "https"):  # checked before join: httpx cannot join data: and the like
        raise SSRFBlocked(
            shown,
            f"{source!r} redirected to a {relative.scheme!r} URL; that scheme is not http or https, "
            "so it was not followed",
        )
    try:
        return checked.url.join(relative).copy_with(fragment=None)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise ToolError(f"{source!r} redirected to {shown!r}, which is not a valid URL: {exc}") from None


def _transport() -> httpx.AsyncHTTPTransport:
    """A fresh transport per hop: the pool is keyed by IP, not host, so no reuse.

    Requests go to the transport, not through ``AsyncClient.send``: the client
    parses every ``Location`` header itself (even with ``follow_redirects=False``)
    and raises a bare ``httpx.InvalidURL`` for a ``data:`` or broken one, before
    ``_redirect_target`` could say what happened.  ``trust_env=False`` keeps
    proxy variables from routing the request somewhere that resolves the host again.
    """
    return httpx.AsyncHTTPTransport(verify=_ssl_context(), trust_env=False)


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    """The TLS context used for https; certificates are checked against the URL's host."""
    return httpx.create_ssl_context()


def pinned_request(checked: CheckedURL, address_index: int = 0, *, timeout_s: float = 10.0) -> httpx.Request:
    """Build a GET to a checked address that still names the original host.

    The URL carries the IP so httpx cannot resolve again; ``Host`` and, for
    https, the ``sni_hostname`` extension (used for SNI and certificate
    verification) carry the original host.  Credentials in the URL are dropped.
    """
    ip = checked.addresses[address_index]
    target = checked.url.copy_with(host=str(ip), userinfo=b"", fragment=None)
    extensions: dict[str, object] = {"timeout": httpx.Timeout(timeout_s).as_dict()}
    if checked.url.scheme == "https":
        extensions["sni_hostname"] = checked.host
    headers = {
        "Host": checked.url.netloc.decode("ascii"),
        "User-Agent": USER_AGENT,
        "Accept": "text/html, text/plain;q=0.9, */*;q=0.5",
        "Accept-Encoding": ACCEPT_ENCODING,  # only what encodings decodes within the size cap
    }
    return httpx.Request("GET", target, headers=headers, extensions=extensions)


async def _send_pinned(transport: httpx.AsyncHTTPTransport, checked: CheckedURL, timeout_s: float) -> httpx.Response:
    """Send to each checked address in turn until one accepts the connection."""
    error: Exception | None = None
    for index in range(len(checked.addresses)):
        try:
            request = pinned_request(checked, index, timeout_s=timeout_s)
            response = await transport.handle_async_request(request)
            response.request = request
            return response
        except httpx.ConnectError as exc:
            error = exc
        except httpx.TimeoutException as exc:
            raise ToolError(f"fetching {str(checked.url)!r} timed out: {exc!r}") from None
        except httpx.HTTPError as exc:
            raise ToolError(f"fetching {str(checked.url)!r} failed: {exc!r}") from None
    raise ToolError(f"could not connect to {checked.host!r}: {error!r}")


async def _read(url: str, checked: CheckedURL, response: httpx.Response, max_bytes: int) -> FetchResult:
    """Read at most ``max_bytes`` of a text body, counted after content decoding, and decode it."""
    mime = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if mime and not _is_text(mime):
        raise ToolError(
            f"{str(checked.url)!r} returned {mime!r}, which is not text; only text and HTML pages can be read"
        )
    where = str(checked.url)
    decoder = content_decoder(response.headers.get_list("content-encoding", split_commas=True), where)
    body = bytearray()
    truncated = False
    try:
        # Raw bytes, decoded here: httpx's own decoding would expand every
        # layer in full before any cap could apply.  One byte past the cap
        # tells a truncated body from one exactly max_bytes long.
        async for raw in response.aiter_raw():
            decoder.decode_into(raw, body, max_bytes + 1)
            if len(body) > max_bytes or decoder.finished:
                break
        decoder.flush_into(body, max_bytes + 1)
        if len(body) > max_bytes:
            del body[max_bytes:]
            truncated = True
    except httpx.TimeoutException as exc:
        raise ToolError(f"reading {str(checked.url)!r} timed out: {exc!r}") from None
    except httpx.HTTPError as exc:
        raise ToolError(f"reading {str(checked.url)!r} failed: {exc!r}") from None
    data = body  # no bytes() copy: the buffer is already capped at max_bytes
    if not mime and b"\x00" in data[:4096]:
        raise ToolError(f"{str(checked.url)!r} returned binary data without a content type; only text can be read")
    sniffed_html = data[:512].lstrip().lower().startswith((b"<!doctype html", b"<html"))
    is_html = mime in _HTML_TYPES or (not mime and sniffed_html)
    text = _decode(data, response.charset_encoding or (_meta_charset(data) if is_html else None), final=not truncated)
    return FetchResult(
        url=url,
        final_url=str(checked.url.copy_with(userinfo=b"")),
        status=response.status_code,
        content_type=mime or ("text/html" if is_html else "text/plain"),
        text=html_to_text(text) if is_html else text,
        truncated=truncated,
    )


def _is_text(mime: str) -> bool:
    """True for content types whose body is meant to be read as text."""
    return mime.startswith("text/") or mime in _TEXT_TYPES or mime in _HTML_TYPES or mime.endswith(("+json", "+xml"))


def _meta_charset(data: bytes | bytearray) -> str | None:
    """The charset an HTML page declares in a ``<meta>`` tag near its start."""
    match = _META_CHARSET.search(data[:4096])
    return match.group(1).decode("ascii") if match else None


def _decode(data: bytes | bytearray, charset: str | None, *, final: bool) -> str:
    """Decode leniently; a body cut at ``max_bytes`` drops its partial last character."""
    try:
        decoder = codecs.getincrementaldecoder(charset or "utf-8")(errors="replace")
    except LookupError:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return decoder.decode(data, final=final)


def html_to_text(html: str) -> str:
    """Render HTML to readable plain text: drop scripts and styles, keep text and line structure."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return parser.text()


# The standard library's html.parser is enough for "readable text"; a full
# HTML-to-markdown dependency would add weight for little gain to the model.
_SKIP = frozenset({"script", "style", "noscript", "template", "svg", "math", "iframe", "object", "canvas"})
_BLOCK = frozenset(
    {
        "address", "article", "aside", "blockquote", "caption", "details", "dialog", "div", "dl",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
        "header", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "tbody", "tfoot",
        "thead", "title", "ul",
    }
)  # fmt: skip
_BREAK = frozenset({"br", "hr", "li", "tr", "dt", "dd"})  # a line break before, none after
_WS = re.compile(r"\s+")


class _TextExtractor(HTMLParser):
    """Collect visible text, turning block elements into line breaks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._skip = 0
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip += 1
        elif self._skip:
            return
        elif tag in _BREAK:
            self._out.append("\n- " if tag == "li" else "\n")
        elif tag in _BLOCK:
            self._out.append("\n")
            if tag == "pre":
                self._pre += 1
        elif tag in ("td", "th") and self._out and not self._out[-1][-1:].isspace():
            self._out.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip = max(0, self._skip - 1)
        elif self._skip:
            return
        elif tag in _BLOCK:
            self._out.append("\n")
            if tag == "pre":
                self._pre = max(0, self._pre - 1)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._pre:
            self._out.append(data)
            return
        text = _WS.sub(" ", data)
        if not self._out or self._out[-1][-1:].isspace():
            text = text.lstrip()
        if text:
            self._out.append(text)

    def text(self) -> str:
        """The collected text, trailing spaces trimmed and blank lines collapsed."""
        lines: list[str] = []
        for line in "".join(self._out).split("\n"):
            line = line.rstrip()
            if line or (lines and lines[-1]):
                lines.append(line)
        return "\n".join(lines).strip("\n")
