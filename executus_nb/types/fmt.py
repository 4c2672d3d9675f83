"""How figures and untrusted values are written for people: one source for every view.

Money, counts and durations are formatted here for the reprs, the terminal
printer, the static HTML and the grid (which receives these strings and never
formats numbers itself).  Model and tool content is hostile by assumption: the
functions below never raise, cap depth and size with a visible note, and escape
control characters (C0/C1, bidi overrides, line separators, lone surrogates).
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

DETAIL_CHARS = 2_000  # characters of one detail block (arguments, a result, an output)
MAX_DEPTH = 20  # levels of nesting shown before "… nested deeper than N levels"
PARSE_CHARS = 200_000  # JSON text longer than this is shown as sent, not parsed
PRICE_UNKNOWN = "price unknown: register it with Executor(prices=…)"
UNKNOWN = "–"
UNKNOWN_TEXT = "unknown"  # in plain text (reprs, the terminal), where no tooltip can explain a dash

# Control and format characters that change how text is displayed rather than what it says:
# C0 (but tab and newline), DEL, C1, bidi embeddings/overrides/isolates and marks, zero-width
# and invisible format characters, tag characters (hidden text), line/paragraph separators,
# the BOM and lone surrogates (which cannot even be encoded).  ZWJ/ZWNJ stay: emoji and scripts need them.
_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b\u200e\u200f\u2028-\u202e\u2060-\u2064"
    "\u2066-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff\U000e0000-\U000e007f]"
)
_CONTROL_OR_NEWLINE = re.compile(_CONTROL.pattern[:-1] + "\n\t]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code == 0x0A:
        return "\\n"
    if code == 0x09:
        return "\\t"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def clean(text: str, *, multiline: bool = True) -> str:
    """``text`` with every control character written as a visible escape (``\\x1b``, ``\\u202e``).

    With ``multiline=False`` newlines and tabs are escaped too (one terminal line stays one line).
    """
    pattern = _CONTROL if multiline else _CONTROL_OR_NEWLINE
    return pattern.sub(_escape_char, text)


def clip(text: str, limit: int = DETAIL_CHARS) -> str:
    """At most ``limit`` characters of ``text``, then a note of how many more there were."""
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit:,} more characters]"


def clip_end(text: str, limit: int) -> str:
    """At most the last ``limit`` characters of ``text`` (an error's point is at its end)."""
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def esc(text: str, limit: int | None = None, *, multiline: bool = True) -> str:
    """Untrusted text for HTML: clipped to ``limit``, control characters escaped, markup escaped."""
    text = safe_str(text)
    return html.escape(clean(clip(text, limit) if limit else text, multiline=multiline))


def line(text: Any, limit: int = 300) -> str:
    """Untrusted text for one terminal line: clipped, control characters and newlines escaped."""
    return clean(clip(safe_str(text), limit), multiline=False)


# -- figures -------------------------------------------------------------------------------
def money(value: float | None, *, unknown: str = UNKNOWN) -> str:
    """``$0``, ``$0.0123`` / ``$0.00014`` (3 significant digits below a dollar), ``$1.23``.

    An unknown price (NaN) is ``unknown``: ``–`` in views (with a tooltip), the word in plain text.
    """
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return unknown
    if value == 0:
        return "$0"
    sign, value = ("-" if value < 0 else ""), abs(value)
    if value < 1:
        digits = max(0, 2 - math.floor(math.log10(value)))
        text = f"{value:.{digits}f}".rstrip("0")
        text += "0" * max(0, 2 - len(text.partition(".")[2]))  # cents at least: $0.50, $0.01
        if float(text) < 1:
            return f"{sign}${text}"
        value = float(text)  # rounded up to a dollar: shown as dollars and cents
    return f"{sign}${value:,.2f}"


def money_html(value: float | None) -> str:
    """``money(value)`` as HTML; an unknown price says how to register one in a tooltip."""
    text = money(value)
    if text == UNKNOWN:
        return f'<span class="executus-cost-unknown" title="{html.escape(PRICE_UNKNOWN)}">{UNKNOWN}</span>'
    return html.escape(text)


def numbered(names: Sequence[str]) -> list[str]:
    """``names`` made unique for display: a repeated name gets `` #2``, `` #3``… (fan-out columns, pipeline phases)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
    return out


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 step``, ``2 steps`` (``many`` for irregular plurals)."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def seconds(value: float | None) -> str:
    """A duration as ``1.23 s``; unknown is ``–``."""
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return UNKNOWN
    return f"{value:.2f} s"


def count(value: int | None) -> str:
    """A count such as tokens (``1234``, as in the headers and frames); unknown is ``–``."""
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return UNKNOWN
    return str(int(value))


METRIC_TEXT = {"latency": seconds, "cost": money, "tokens": count}


# -- values --------------------------------------------------------------------------------
def safe_str(value: Any) -> str:
    """``str(value)`` that never raises (a broken ``__str__`` gives a short placeholder)."""
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    try:
        return str(value)
    except Exception as exc:  # noqa: BLE001 - rendering must never fail
        return _unprintable(value, exc)


def safe_repr(value: Any, limit: int = DETAIL_CHARS) -> str:
    """``repr(value)``, clipped, that never raises (deep recursion, a raising ``__repr__``)."""
    try:
        text = repr(value)
    except RecursionError as exc:  # nested too deep for repr: the iterative printer caps the depth
        text = " ".join(pretty(value, limit=limit).split()) if _children(value) else _unprintable(value, exc)
    except Exception as exc:  # noqa: BLE001 - rendering must never fail
        text = _unprintable(value, exc)
    return clip(text if type(text) is str else safe_str(text), limit)


def _unprintable(value: Any, exc: BaseException) -> str:
    return f"<unprintable {type(value).__name__} object: {type(exc).__name__}>"


def show(value: Any, limit: int = DETAIL_CHARS) -> str:
    """A value as a person reads it: text as is, anything else pretty-printed; always capped."""
    if isinstance(value, str):
        return clip(safe_str(value), limit)
    return pretty(value, limit=limit)


def pretty_text(text: str, limit: int = DETAIL_CHARS) -> str:
    """JSON text (tool arguments) pretty-printed when it parses; otherwise shown as sent, capped."""
    text = safe_str(text)
    stripped = text.lstrip()
    if len(text) > PARSE_CHARS or stripped[:1] not in ("{", "["):
        return clip(text, limit)
    try:
        value = json.loads(text)
    except RecursionError:  # deeper than the parser goes: far deeper than we show
        return clip(text, limit) + f"\n… nested deeper than {MAX_DEPTH} levels (shown as sent)"
    except ValueError:
        return clip(text, limit)
    return pretty(value, limit=limit)


_SCALARS = (str, int, float, bool, type(None))


def _scalar(value: Any, limit: int) -> str:
    if isinstance(value, str):
        text = safe_str(value)
        note = f"… [{len(text) - limit:,} more characters]" if len(text) > limit else ""
        return json.dumps(text[:limit] + note, ensure_ascii=False)
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        try:
            return str(int(value))
        except ValueError:  # beyond Python's int-to-str digit limit
            return f"<int of {value.bit_length():,} bits>"
    if isinstance(value, float):
        return repr(float(value))
    return safe_repr(value, limit)


def _children(value: Any) -> tuple[str, str, Any] | None:
    """(opener, closer, iterator of (key or None, child)) for a container, else None."""
    try:
        if isinstance(value, BaseModel):
            fields = type(value).model_fields
            return "{", "}", ((name, getattr(value, name, None)) for name in fields)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return "{", "}", ((f.name, getattr(value, f.name, None)) for f in dataclasses.fields(value))
        if isinstance(value, Mapping):
            return "{", "}", iter(value.items())
        if isinstance(value, (list, tuple)):
            return "[", "]", ((None, v) for v in value)
        if isinstance(value, (set, frozenset)):
            return "[", "]", ((None, v) for v in value)
    except Exception:  # noqa: BLE001 - a container that cannot be walked is shown by its repr
        return None
    return None


def pretty(value: Any, *, limit: int = DETAIL_CHARS, max_depth: int = MAX_DEPTH, indent: str = " ") -> str:
    """JSON-like text of ``value`` (dicts, lists, pydantic models, dataclasses), never raising.

    Iterative, not recursive, so any depth is safe: levels beyond ``max_depth`` become a
    note, cycles are marked, and output stops with a note once it passes ``limit`` characters.
    """
    parts: list[str] = []
    size = 0
    stack: list[list[Any]] = []  # [items iterator, depth, closer, count, id]
    active: set[int] = set()

    def emit(text: str) -> None:
        nonlocal size
        parts.append(text)
        size += len(text)

    def start(item: Any, depth: int) -> None:
        if isinstance(item, _SCALARS):
            emit(_scalar(item, limit))
            return
        shape = _children(item)
        if shape is None:
            emit(_scalar(item, limit))
        elif depth >= max_depth:
            emit(f"{shape[0]}… nested deeper than {max_depth} levels{shape[1]}")
        elif id(item) in active:
            emit(f"{shape[0]}… (refers to itself){shape[1]}")
        else:
            active.add(id(item))
            emit(shape[0])
            stack.append([shape[2], depth, shape[1], 0, id(item)])

    start(value, 0)
    while stack and size <= limit:
        frame = stack[-1]
        items, depth, closer, n, ident = frame
        try:
            entry = next(items, None)
        except Exception:  # noqa: BLE001 - a container changed or broke while walked
            entry = None
        if entry is None:
            stack.pop()
            active.discard(ident)
            emit(("\n" + indent * depth if n else "") + closer)
            continue
        key, child = entry
        emit(("," if n else "") + "\n" + indent * (depth + 1))
        frame[3] = n + 1
        if key is not None or closer == "}":
            emit((_scalar(key, 200) if isinstance(key, str) else json.dumps(safe_str(key), ensure_ascii=False)) + ": ")
        start(child, depth + 1)
    text = "".join(parts)
    if stack or len(text) > limit:
        return text[:limit] + f"\n… [cut at {limit:,} characters]"
    return text
