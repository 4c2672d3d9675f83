"""Secrets redacted by value: every key, token and credential this process was given, in every form.

One process-wide ``redactor`` holds the secret values seen so far: secret-named model
parameters (``api_key``…), header values (``extra_headers``, ``headers``), the userinfo and
key-like query parameters of URLs (``api_base``), secret-named environment variables.  It
replaces each value, its base64 (standard and urlsafe, padded or not, at any alignment, so
``Basic`` auth of ``user:pass`` is caught too), its percent-encoding and every prefix of 8 or
more characters of these forms with ``***``.  The run log applies it to every event as it is
emitted, so results, DataFrames, views, sinks and caches built from events are clean; log
records of every logger are redacted as they are made.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

from pydantic import BaseModel, SecretBytes, SecretStr

MASK = "***"
MIN_SECRET_LEN = 6  # shorter values are too common to replace everywhere
MIN_PREFIX_LEN = 8  # a secret's echo is redacted from this many leading characters on

# Parameter, environment-variable and header names that say they hold a secret.  ``tokens``
# (``max_tokens``) and ``author`` (``GIT_AUTHOR_NAME``) are counts and names, not secrets.
SECRET_NAME = re.compile(
    r"key|secret|token(?!s|i[sz])|pass(?!age|ive|port|thr|env)|pwd|credential|auth(?!or)|signature|cookie|bearer"
    r"|private|(?:^|_)pat(?:$|_)",
    re.IGNORECASE,
)
# Query parameters of a URL that carry credentials (``?key=``, ``?sig=``, ``?access_token=``…).
_QUERY_SECRET_NAME = re.compile(rf"{SECRET_NAME.pattern}|^(sig|sas|code|pass|session)$", re.IGNORECASE)
# Headers known not to carry credentials; every other header value counts as a secret.
PUBLIC_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "connection",
        "content-type",
        "content-length",
        "host",
        "origin",
        "referer",
        "http-referer",
        "user-agent",
        "x-title",
        "anthropic-version",
        "anthropic-beta",
        "openai-beta",
        "x-stainless-lang",
        "x-stainless-package-version",
        "x-request-id",
        "x-client-request-id",
        "idempotency-key",
    }
)
_AUTH_SCHEMES = ("bearer", "basic", "token", "apikey", "api-key", "key", "digest", "sharedaccesssignature")


@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    """True when a parameter or variable name says it holds a secret (``api_key``, ``AWS_SECRET…``)."""
    return bool(SECRET_NAME.search(name))


def _is_headers_param(name: str) -> bool:
    return name.lower().endswith("headers")


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, SecretBytes):
        return value.get_secret_value().decode("utf-8", "replace")
    return value


def _strings(value: Any) -> list[str]:
    """Every string inside ``value`` (headers given as lists, nested parameters)."""
    value = _plain(value)
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, (list, tuple)):
        return [s for item in value for s in _strings(item)]
    return []


def secret_values(value: Any) -> list[str]:
    """The secrets in a value given under a secret name.

    A string is one secret, except structured ones, where the secret parts are taken and not
    their boilerplate (whose first 8 characters are common text): JSON (service-account keys:
    the values of secret-named fields) and PEM blocks (the base64 body, not ``-----BEGIN``).
    A mapping gives the values of its secret-named keys; a list every item.
    """
    value = _plain(value)
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in "{[":
            try:
                return secret_values(json.loads(text))
            except ValueError:
                return [text]
        if "-----BEGIN" in text:
            body = [
                line.strip()
                for line in text.replace("\\n", "\n").splitlines()
                if line.strip() and not line.lstrip().startswith("-----")
            ]
            return body + ["".join(body)]
        return [text]
    if isinstance(value, Mapping):
        found: list[str] = []
        for key, item in value.items():
            if is_secret_name(str(key)):
                found += secret_values(item)
            elif isinstance(item, Mapping):  # e.g. {"auth": {...}} nested under a plain name
                found += secret_values(item)
        return found
    if isinstance(value, (list, tuple)):
        return [s for item in value for s in secret_values(item)]
    return []


def auth_value_secrets(value: str) -> list[str]:
    """The secrets in a header value: the credential after an auth scheme (``Bearer``, ``Basic``: also
    ``user:pass``, any ``Scheme credential``), the values of ``name=value`` pairs (cookies), or the value."""
    value = value.strip()
    scheme, _, credential = value.partition(" ")
    credential = credential.strip()
    if not credential or " " in credential or not scheme.isalpha():
        pairs = [v.strip() for part in re.split(r"[;,&]", value) if "=" in part for v in [part.split("=", 1)[1]]]
        return [value, *pairs]
    # A known scheme gives its credential only: "Bearer " + a few letters would match other tokens.
    found = [credential] if scheme.lower() in _AUTH_SCHEMES else [value, credential]
    if scheme.lower() == "basic":
        try:
            pair = base64.b64decode(credential + "=" * (-len(credential) % 4), validate=True).decode()
        except ValueError:
            pair = ""
        user, sep, password = pair.partition(":")
        if sep:
            found += [pair, user, password]
    return found


def header_secrets(headers: Mapping[str, Any]) -> list[str]:
    """Secret values of a headers mapping: every value except those of well-known public headers."""
    found: list[str] = []
    for name, value in headers.items():
        if str(name).lower() in PUBLIC_HEADERS:
            continue
        for text in _strings(value):
            found += auth_value_secrets(text)
    return found


def url_secrets(url: str) -> list[str]:
    """Credentials in a URL: userinfo (user, password, ``user:pass``) and key-like query (or fragment,
    ``#access_token=``) values."""
    try:
        parts = urlsplit(url.strip())
        user, password = parts.username, parts.password
        query = parse_qsl(parts.query, keep_blank_values=False) + parse_qsl(parts.fragment, keep_blank_values=False)
    except ValueError:
        return []
    found: list[str] = []
    if "@" in parts.netloc:
        raw_userinfo = parts.netloc.rpartition("@")[0]
        found += [raw_userinfo, unquote(raw_userinfo)]
        found += [unquote(v) for v in (user, password) if v]
    for name, value in query:
        if _QUERY_SECRET_NAME.search(name):
            found.append(value)
    return found


def _has_url_credentials(text: str) -> bool:
    return "://" in text and ("@" in text or "?" in text or "#" in text)


def params_secrets(params: Mapping[str, Any]) -> list[str]:
    """Secret values in litellm call parameters: secret-named ones, headers, URL credentials."""
    found: list[str] = []
    for name, value in params.items():
        if _is_headers_param(str(name)) and isinstance(value, Mapping):
            found += header_secrets(value)
        elif is_secret_name(str(name)):
            found += secret_values(value)
        else:
            found += [s for text in _strings(value) if _has_url_credentials(text) for s in url_secrets(text)]
    return found


def environment_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Secret values of the environment: secret-named variables and credentials in URL values.

    A value that is a file path (``GOOGLE_APPLICATION_CREDENTIALS``, ``SSH_AUTH_SOCK``) names
    where a secret is, and is not one.
    """
    environ = os.environ if environ is None else environ
    found: list[str] = []
    for name, value in environ.items():
        if _has_url_credentials(value):
            found += url_secrets(value)
        elif is_secret_name(name) and not value.startswith(("/", "./", "../", "~")):
            found += secret_values(value)
    return found


def _mask_pairs(text: str) -> str:
    """``a=1&key=s`` with the values of key-like names as ``***``."""
    return "&".join(
        f"{name}={MASK}" if sep and _QUERY_SECRET_NAME.search(unquote(name)) else f"{name}{sep}{value}"
        for name, sep, value in (pair.partition("=") for pair in text.split("&"))
    )


def mask_url(url: str) -> str:
    """``url`` with its userinfo and key-like query (and fragment) values as ``***`` (for reprs and dumps)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    masked = parts._replace(netloc=netloc, query=_mask_pairs(parts.query), fragment=_mask_pairs(parts.fragment))
    return urlunsplit(masked)


def mask_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Call parameters as shown in reprs and dumps: secret-named values, secret headers and URL
    credentials as ``***``; any other text with every known secret redacted."""
    shown: dict[str, Any] = {}
    for name, value in params.items():
        if _is_headers_param(str(name)) and isinstance(value, Mapping):
            shown[name] = {k: (v if str(k).lower() in PUBLIC_HEADERS or not v else MASK) for k, v in value.items()}
        elif is_secret_name(str(name)) and any(_strings(value)):
            shown[name] = MASK
        elif isinstance(value, str) and _has_url_credentials(value):
            shown[name] = redactor.redact(mask_url(value))
        else:
            shown[name] = redactor.scrub(value)
    return shown


# -- the forms a secret is echoed in ----------------------------------------------------------

_URLSAFE = str.maketrans("+/", "-_")


def _base64_forms(secret: str) -> list[str]:
    """Base64 of ``secret`` as it appears inside any base64 text: for each of the 3 alignments,
    the characters that depend on the secret's bytes only; plus the whole padded encoding."""
    data = secret.encode("utf-8")
    whole = base64.b64encode(data).decode()
    forms = [whole, whole.rstrip("=")]
    for offset, skip in ((0, 0), (1, 2), (2, 3)):
        padded = b"\0" * offset + data
        text = base64.b64encode(padded).decode().rstrip("=")
        end = len(text) - (1 if len(padded) % 3 else 0)  # the last char also holds the next byte's bits
        forms.append(text[skip:end])
    forms += [f.translate(_URLSAFE) for f in forms]
    return forms


def forms_of(secret: str) -> set[str]:
    """Every form of ``secret`` that is redacted (itself, percent-encoded, base64), long enough to match."""
    forms = {secret, quote(secret, safe=""), quote(secret)} | set(_base64_forms(secret))
    return {f for f in forms if len(f) >= MIN_PREFIX_LEN or f == secret}


_ATOMS = frozenset({int, float, bool, type(None)})


def _trie_pattern(words: Iterable[str]) -> str:
    """One regex matching any of ``words``, longest first, built as a trie: the regex engine then
    tests one branch per character instead of every word (~1.6x faster on long text)."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        branches = [re.escape(char) + build(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body  # a word may end here; greedy: longer ones first

    return build(trie)


class Redactor:
    """A set of secret values and one precompiled search for all their forms; ``redact`` replaces them.

    Matching looks for the first 8 characters of each form, then extends the match over as
    much of the form as follows, so any prefix of 8+ characters is replaced.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._heads: dict[str, tuple[str, ...]] = {}
        self._pattern: re.Pattern[str] | None = None
        self._needles: tuple[str, ...] = ()
        self._environ_seen: dict[Any, Any] | None = None

    @property
    def active(self) -> bool:
        """True once any secret is known (redaction costs nothing before)."""
        return self._pattern is not None

    def __len__(self) -> int:
        return len(self._values)

    def add(self, *values: Any) -> None:
        """Register secret values (strings shorter than 6 characters are ignored)."""
        new = {v.strip() for v in map(_plain, values) if isinstance(v, str) and len(v.strip()) >= MIN_SECRET_LEN}
        new -= self._values
        if not new:
            return
        with self._lock:
            self._values |= new
            heads: dict[str, set[str]] = {}
            for value in self._values:
                for form in forms_of(value):
                    heads.setdefault(form[:MIN_PREFIX_LEN], set()).add(form)
            self._heads = {h: tuple(sorted(f, key=len, reverse=True)) for h, f in heads.items()}
            self._needles = tuple(self._heads)
            self._pattern = re.compile(_trie_pattern(self._heads))
        _install_log_redaction()

    def add_params(self, params: Mapping[str, Any]) -> None:
        """Register the secrets of litellm call parameters (see ``params_secrets``)."""
        self.add(*params_secrets(params))

    def add_environment(self, environ: Mapping[str, str] | None = None) -> None:
        """Register the secrets of the environment (see ``environment_secrets``).

        Called for every run: ``os.environ`` is only read again when it changed since the last call.
        """
        if environ is None:
            # os.environ's undecoded dict (CPython) is ~50x cheaper to copy and compare than decoding it.
            raw = getattr(os.environ, "_data", None)
            snapshot = dict(raw) if isinstance(raw, dict) else dict(os.environ)
            if snapshot == self._environ_seen:
                return
            self._environ_seen = snapshot
        self.add(*environment_secrets(environ))

    def redact(self, text: str) -> str:
        """``text`` with every known secret form, and every 8+ character prefix of one, as ``***``."""
        pattern = self._pattern
        if pattern is None or not isinstance(text, str) or len(text) < MIN_SECRET_LEN:
            return text
        # On long text a substring test per head (C speed) is faster than the regex's scan.
        if len(text) > 512 and not any(needle in text for needle in self._needles):
            return text
        match = pattern.search(text)
        if match is None:
            return text
        heads, pieces, pos = self._heads, [], 0
        while match is not None:
            start = match.start()
            end = match.end()
            for form in heads.get(match.group(), ()):
                n = len(match.group())
                limit = min(len(form), len(text) - start)
                while n < limit and text[start + n] == form[n]:
                    n += 1
                end = max(end, start + n)
            pieces += [text[pos:start], MASK]
            pos = end
            match = pattern.search(text, pos)
        pieces.append(text[pos:])
        return "".join(pieces)

    def scrub(self, value: Any) -> Any:
        """``value`` with secrets redacted in every string inside it (dicts, lists, pydantic models).

        Returns the same object when nothing changed, so clean data is not copied.
        """
        if self._pattern is None:
            return value
        return self._scrub(value, 0)

    def _scrub(self, value: Any, depth: int) -> Any:
        kind = type(value)
        if kind is str:
            return value if len(value) < MIN_SECRET_LEN else self.redact(value)
        if kind in _ATOMS:
            return value
        if depth > 64:  # deeper than any event holds: judge it by its text, never recurse without end
            try:
                text = repr(value)
            except Exception:  # noqa: BLE001 - an object that cannot show itself shows nothing
                return MASK
            clean = self.redact(text)
            return value if clean == text else clean
        depth += 1
        if isinstance(value, dict):
            out: dict[Any, Any] | None = None
            for n, (key, item) in enumerate(value.items()):
                # short strings and numbers (most keys and values of a message) need no call
                new_key = key if type(key) is str and len(key) < MIN_SECRET_LEN else self._scrub(key, depth)
                new_item = item if type(item) in _ATOMS else self._scrub(item, depth)
                if out is None and (new_key is not key or new_item is not item):
                    out = dict(list(value.items())[:n])
                if out is not None:
                    out[new_key] = new_item
            return value if out is None else out
        if isinstance(value, (list, tuple)):
            new = [self._scrub(item, depth) for item in value]
            if all(a is b for a, b in zip(new, value, strict=True)):
                return value
            return kind(new) if kind in (list, tuple) else new
        if isinstance(value, BaseModel):
            if _holds_no_text(type(value)):
                return value
            changed = {}
            for name, item in value.__dict__.items():
                clean = self._scrub(item, depth)
                if clean is not item:
                    changed[name] = clean
            return value.model_copy(update=changed) if changed else value
        if isinstance(value, str):  # a str subclass
            return self.redact(value)
        return value


@functools.lru_cache(maxsize=512)
def _holds_no_text(model: type[BaseModel]) -> bool:
    """True for a pydantic model whose fields are all numbers or booleans (``Usage``): nothing to redact."""
    return all(field.annotation in (int, float, bool) for field in model.model_fields.values())


redactor = Redactor()
"""The process-wide redactor: every ``ModelSpec``, executor and run registers its secrets here."""


def redact(text: str) -> str:
    """``text`` with every secret this process has seen replaced by ``***``."""
    return redactor.redact(text)


# -- log records ------------------------------------------------------------------------------

_log_lock = threading.Lock()
_log_installed = False


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string is the logging module's to report
        return
    clean = redactor.redact(message)
    if clean != message:
        record.msg, record.args = clean, ()
    if record.exc_info and record.exc_info[1] is not None:
        text = logging.Formatter().formatException(record.exc_info)
        clean = redactor.redact(text)
        if clean != text:  # the traceback text replaces the exception, which still holds the secret
            record.exc_info, record.exc_text = None, clean
    if record.stack_info:
        record.stack_info = redactor.redact(record.stack_info)


def _install_log_redaction() -> None:
    """Wrap the log-record factory once, so records of every logger (ours, litellm's, httpx's
    request lines with ``?key=``) are redacted when made, before any handler or capture sees them."""
    global _log_installed
    with _log_lock:
        if _log_installed:
            return
        previous = logging.getLogRecordFactory()

        def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _redact_record(record)
            return record

        logging.setLogRecordFactory(make_record)
        _log_installed = True
