"""A scripted OpenAI-compatible chat-completions server on loopback.

Tests and benchmarks point litellm's ``openai/`` provider at ``server.base_url``
so the real HTTP path (usage, streaming, errors, timeouts) is exercised offline.
Plain module with no pytest dependency, so ``bench/`` scripts can import it.

Token rule (deterministic, not a real tokenizer):

* ``prompt_tokens`` = sum over messages of ``3 + words(message)``, where
  ``words`` counts whitespace-separated words of the text content (a string, or
  the ``text`` of ``{"type": "text"}`` parts) plus, for assistant tool calls,
  the words of each function name and arguments string. ``tools`` are not counted.
* ``completion_tokens`` = words of the reply text plus, per tool call, the
  words of its name and of its arguments string.
* ``total_tokens`` = the sum of both.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

__all__ = [
    "Disconnect",
    "Fail",
    "Hang",
    "Malformed",
    "Stall",
    "OpenAIServer",
    "RecordedRequest",
    "Reply",
    "ToolCall",
    "ToolCalls",
    "Turn",
    "completion_tokens",
    "prompt_tokens",
    "words",
]


# --------------------------------------------------------------------------- turns


@dataclass(frozen=True)
class Reply:
    """An assistant text answer."""

    text: str
    finish_reason: str = "stop"


@dataclass(frozen=True)
class ToolCall:
    """One function call; ``arguments`` is sent verbatim (may be invalid JSON)."""

    name: str
    arguments: str = "{}"
    id: str | None = None


@dataclass(frozen=True)
class ToolCalls:
    """An assistant message with one or more (parallel) tool calls and optional text."""

    calls: tuple[ToolCall, ...]
    text: str | None = None


@dataclass(frozen=True)
class Fail:
    """An HTTP error status with an OpenAI-style error body (or ``body`` verbatim)."""

    status: int = 500
    body: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Hang:
    """Wait ``seconds`` (woken early by ``stop()``), then answer with ``then``."""

    seconds: float
    then: Turn | None = None


@dataclass(frozen=True)
class Stall:
    """A stream that starts ``then`` (headers, a first event), goes silent ``seconds``, then finishes.

    Not streamed, the reply comes after ``seconds`` (as with ``Hang``).
    """

    seconds: float
    then: Reply | ToolCalls = Reply("ok")


@dataclass(frozen=True)
class Malformed:
    """A response whose body is not what the client expects (200 by default)."""

    body: str = "not json"
    status: int = 200
    content_type: str = "application/json"


@dataclass(frozen=True)
class Disconnect:
    """Close the connection without sending any response."""


Turn = Reply | ToolCalls | Fail | Hang | Stall | Malformed | Disconnect
Responder = Callable[[dict[str, Any]], Turn | str | None]
ToolCallSpec = ToolCall | tuple | Mapping[str, Any]


def _as_tool_call(spec: ToolCallSpec) -> ToolCall:
    """Normalise a ``ToolCall``, ``(name, args[, id])`` tuple or dict to a ``ToolCall``."""
    if isinstance(spec, ToolCall):
        return spec
    if isinstance(spec, Mapping):
        name, args, call_id = spec["name"], spec.get("arguments", {}), spec.get("id")
    else:
        name, args, call_id = (*tuple(spec), None)[:3]
    raw = args if isinstance(args, str) else json.dumps(args)
    return ToolCall(name=name, arguments=raw, id=call_id)


def _as_turn(value: Turn | str) -> Turn:
    """Accept a plain string as shorthand for ``Reply(text)``."""
    return Reply(value) if isinstance(value, str) else value


# --------------------------------------------------------------------------- tokens


def words(text: str | None) -> int:
    """Number of whitespace-separated words in ``text`` (0 for None)."""
    return len(text.split()) if text else 0


def _content_text(content: Any) -> str:
    """The text of a message content: a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def prompt_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """Prompt tokens by the module's rule: ``3 + words`` per message."""
    total = 0
    for m in messages:
        n = 3 + words(_content_text(m.get("content")))
        for tc in m.get("tool_calls") or ():
            fn = tc.get("function") or {}
            n += words(fn.get("name")) + words(fn.get("arguments"))
        total += n
    return total


def completion_tokens(turn: Reply | ToolCalls) -> int:
    """Completion tokens of a reply by the module's rule."""
    if isinstance(turn, Reply):
        return words(turn.text)
    return words(turn.text) + sum(words(c.name) + words(c.arguments) for c in turn.calls)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class RecordedRequest:
    """One chat-completions request as received: path, lower-cased headers, JSON body."""

    path: str
    headers: dict[str, str]
    json: dict[str, Any] | None
    raw: bytes = field(repr=False, default=b"")

    @property
    def api_key(self) -> str | None:
        """The bearer token of the Authorization header, if any."""
        auth = self.headers.get("authorization", "")
        return auth[7:] if auth.lower().startswith("bearer ") else None

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The request's ``messages`` (empty when the body was not JSON)."""
        return list((self.json or {}).get("messages") or [])

    def __getitem__(self, key: str) -> Any:
        """Index the JSON body directly: ``req["model"]``."""
        return (self.json or {})[key]


# --------------------------------------------------------------------------- server


class _Server(ThreadingHTTPServer):
    """Threaded HTTP server with a deep accept queue and daemon handler threads."""

    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, owner: OpenAIServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that went away; report anything else."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Routes requests to the owning ``OpenAIServer``."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in ("/v1/models", "/models"):
            owner = self.server.owner
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "openai-server"} for m in owner.models]
            self._send_json(200, {"object": "list", "data": data})
        else:
            self._send_json(404, _error_body(404, f"no route GET {self.path}"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0].rstrip("/")
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._send_json(404, _error_body(404, f"no route POST {self.path}"))
            return
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            self.server.owner._handle_chat(self, RecordedRequest(self.path, headers, body, raw))
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
            self.close_connection = True

    # -- writers -------------------------------------------------------------

    def _send_bytes(self, status: int, data: bytes, content_type: str, extra: Iterable[tuple[str, str]] = ()) -> None:
        """Send a complete response with a correct Content-Length (keep-alive safe)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _send_json(self, status: int, obj: Any, extra: Iterable[tuple[str, str]] = ()) -> None:
        self._send_bytes(status, json.dumps(obj).encode(), "application/json", extra)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _stream_event(self, payload: str) -> None:
        """Write one SSE event as one HTTP chunk."""
        data = f"data: {payload}\n\n".encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")


_ERROR_TYPES = {
    400: ("invalid_request_error", "Bad request."),
    401: ("invalid_request_error", "Incorrect API key provided."),
    403: ("permission_error", "Forbidden."),
    404: ("invalid_request_error", "Not found."),
    429: ("rate_limit_error", "Rate limit reached. Please try again later."),
    500: ("server_error", "The server had an error while processing your request."),
    503: ("server_error", "The server is overloaded."),
}


def _error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error JSON body for ``status``."""
    kind, default = _ERROR_TYPES.get(status, ("server_error", f"HTTP {status}"))
    return {"error": {"message": message or default, "type": kind, "param": None, "code": None}}


_PIECE = re.compile(r"\s*\S+\s*|\s+")


def _pieces(text: str) -> list[str]:
    """Split text into word-sized stream deltas that concatenate back to it."""
    return _PIECE.findall(text) or [text]


class OpenAIServer:
    """A scripted OpenAI-compatible server on 127.0.0.1 with a random port.

    Enqueue turns (``reply``, ``tool_call``, ``fail``, ``hang`` ...); each chat
    request consumes one, else asks ``responder``, else answers ``default``.
    """

    def __init__(
        self,
        *,
        default: Turn | str = "ok",
        responder: Responder | None = None,
        latency_s: float = 0.0,
        chunk_delay_s: float = 0.0,
        models: Iterable[str] = ("test-model",),
    ) -> None:
        self.default: Turn = _as_turn(default)
        self.responder = responder
        self.latency_s = latency_s
        self.chunk_delay_s = chunk_delay_s
        self.models = list(models)
        self.requests: list[RecordedRequest] = []
        self.max_concurrency = 0
        self._in_flight = 0
        self._turns: deque[Turn] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._next_id = 0

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> Self:
        """Bind 127.0.0.1 on a free port and serve from a daemon thread."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _Server(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"openai-server:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake hanging handlers and close open keep-alive connections."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (only while started)."""
        if self._httpd is None:
            raise RuntimeError("OpenAIServer is not started; call start() or use `with`")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no ``/v1``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The ``api_base`` to give litellm / the openai SDK: ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    # -- scripting -------------------------------------------------------------

    def enqueue(self, *turns: Turn | str) -> None:
        """Append turns to the queue; a string is a text reply."""
        with self._lock:
            self._turns.extend(_as_turn(t) for t in turns)

    def reply(self, text: str, finish_reason: str = "stop") -> None:
        """Queue an assistant text reply."""
        self.enqueue(Reply(text, finish_reason))

    def tool_call(self, name: str, arguments: Mapping[str, Any] | str = "{}", call_id: str | None = None) -> None:
        """Queue one tool call; a dict is JSON-encoded, a string is sent verbatim."""
        self.enqueue(ToolCalls((_as_tool_call((name, arguments, call_id)),)))

    def tool_calls(self, calls: Iterable[ToolCallSpec], text: str | None = None) -> None:
        """Queue parallel tool calls given as ``ToolCall``, ``(name, args[, id])`` or dicts."""
        self.enqueue(ToolCalls(tuple(_as_tool_call(c) for c in calls), text))

    def fail(
        self,
        status: int = 500,
        body: str | Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Queue an HTTP error; ``body`` defaults to an OpenAI-style error JSON."""
        raw = json.dumps(body) if isinstance(body, Mapping) else body
        self.enqueue(Fail(status, raw, tuple((headers or {}).items())))

    def hang(self, seconds: float, then: Turn | str | None = None) -> None:
        """Queue a delay before answering (``then`` or the default) for client timeouts."""
        self.enqueue(Hang(seconds, None if then is None else _as_turn(then)))

    def stall(self, seconds: float, then: Reply | ToolCalls | str = "ok") -> None:
        """Queue a reply that starts, then goes silent for ``seconds`` (a provider stuck mid-answer)."""
        self.enqueue(Stall(seconds, _as_turn(then)))  # type: ignore[arg-type]

    def malformed(self, body: str = "not json", status: int = 200, content_type: str = "application/json") -> None:
        """Queue a response with an invalid body."""
        self.enqueue(Malformed(body, status, content_type))

    def disconnect(self) -> None:
        """Queue closing the connection without a response."""
        self.enqueue(Disconnect())

    def reset(self) -> None:
        """Drop queued turns and recorded requests, and reset the concurrency peak."""
        with self._lock:
            self._turns.clear()
            self.requests.clear()
            self.max_concurrency = self._in_flight

    # -- records ---------------------------------------------------------------

    @property
    def count(self) -> int:
        """Number of chat-completions requests received."""
        return len(self.requests)

    @property
    def pending(self) -> int:
        """Number of queued turns not yet consumed."""
        return len(self._turns)

    @property
    def in_flight(self) -> int:
        """Chat requests being handled right now."""
        return self._in_flight

    @property
    def last_request(self) -> RecordedRequest:
        """The most recent chat-completions request."""
        return self.requests[-1]

    # -- handling --------------------------------------------------------------

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def _next_turn(self, body: dict[str, Any]) -> Turn:
        with self._lock:
            if self._turns:
                return self._turns.popleft()
        if self.responder is not None:
            chosen = self.responder(body)
            if chosen is not None:
                return _as_turn(chosen)
        return self.default

    def _handle_chat(self, h: _Handler, req: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(req)
            self._next_id += 1
            n = self._next_id
            self._in_flight += 1
            self.max_concurrency = max(self.max_concurrency, self._in_flight)
        try:
            if req.json is None:
                h._send_json(400, _error_body(400, "request body is not valid JSON"))
                return
            turn = self._next_turn(req.json)
            if self.latency_s > 0:
                self._stopping.wait(self.latency_s)
            while isinstance(turn, Hang):
                self._stopping.wait(turn.seconds)
                turn = turn.then or self.default
            self._answer(h, req.json, turn, n)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _answer(self, h: _Handler, body: dict[str, Any], turn: Turn, n: int) -> None:
        if isinstance(turn, Disconnect):
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        if isinstance(turn, Fail):
            data = turn.body if turn.body is not None else json.dumps(_error_body(turn.status))
            h._send_bytes(turn.status, data.encode(), "application/json", turn.headers)
            return
        if isinstance(turn, Malformed):
            h._send_bytes(turn.status, turn.body.encode(), turn.content_type)
            return
        stall = 0.0
        if isinstance(turn, Stall):
            stall, turn = turn.seconds, turn.then
        assert isinstance(turn, (Reply, ToolCalls)), turn
        model = body.get("model", "")
        usage = {
            "prompt_tokens": prompt_tokens(body.get("messages") or []),
            "completion_tokens": completion_tokens(turn),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        calls = _wire_calls(turn, n)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._stream(h, model, turn, calls, usage if include_usage else None, n, stall)
            return
        if isinstance(turn, Reply):
            message = {"role": "assistant", "content": turn.text}
            finish = turn.finish_reason
        else:
            message = {"role": "assistant", "content": turn.text, "tool_calls": calls}
            finish = "tool_calls"
        if stall:
            self._stopping.wait(stall)
        h._send_json(
            200,
            {
                "id": f"chatcmpl-{n}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "system_fingerprint": None,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": usage,
            },
        )

    def _stream(
        self,
        h: _Handler,
        model: str,
        turn: Reply | ToolCalls,
        calls: list[dict[str, Any]],
        usage: dict[str, int] | None,
        n: int,
        stall: float = 0.0,
    ) -> None:
        base = {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": None,
        }

        def event(delta: dict[str, Any], finish: str | None = None) -> None:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            h._stream_event(json.dumps({**base, "choices": [choice]}))
            if self.chunk_delay_s > 0:
                self._stopping.wait(self.chunk_delay_s)

        h._start_stream()
        event({"role": "assistant", "content": ""})
        if stall:
            h.wfile.flush()
            self._stopping.wait(stall)
        if turn.text:
            for piece in _pieces(turn.text):
                event({"content": piece})
        for i, call in enumerate(calls):
            head = {
                "index": i,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            event({"tool_calls": [head]})
            args = call["function"]["arguments"]
            for piece in _pieces(args) if args else ():
                event({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
        finish = turn.finish_reason if isinstance(turn, Reply) else "tool_calls"
        event({}, finish)
        if usage is not None:
            h._stream_event(json.dumps({**base, "choices": [], "usage": usage}))
        h._stream_event("[DONE]")
        h._end_stream()


def _wire_calls(turn: Reply | ToolCalls, n: int) -> list[dict[str, Any]]:
    """The OpenAI ``tool_calls`` list of a turn, with ids ``call_<n>_<i>`` when unset."""
    if isinstance(turn, Reply):
        return []
    return [
        {
            "id": c.id or f"call_{n}_{i}",
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments},
        }
        for i, c in enumerate(turn.calls)
    ]


def main(argv: list[str] | None = None) -> None:
    """Serve from the command line so a benchmark can run the server in its own process.

    Prints the base URL on the first line of stdout; serves until stdin closes.
    """
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--reply", default="ok", help="the text of every reply")
    args = parser.parse_args(argv)
    with OpenAIServer(default=args.reply, latency_s=args.latency) as server:
        print(server.base_url, flush=True)
        try:
            sys.stdin.read()
        except KeyboardInterrupt:
            pass
        print(f"requests={server.count} max_concurrency={server.max_concurrency}", file=sys.stderr)


if __name__ == "__main__":
    main()
