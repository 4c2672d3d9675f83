"""Secrets are redacted by value: every secret the executor saw, in its echoed forms, in every artifact.

The end-to-end test plants secrets in ``api_key``, ``extra_headers``, ``headers``, the userinfo
and query of ``api_base``, a fan-out model and an environment variable; the loopback server
echoes each of them, their base64 (as Basic auth would) and a 10-character prefix in an error
body, a reply and tool-call arguments; then every artifact a user (or a log collector) can
read is searched for them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import traceback

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from executus_nb import Agent, ConfigError, Executor, ModelCallError, RunStatus, tool
from executus_nb.model.spec import ModelSpec
from executus_nb.redaction import (
    Redactor,
    environment_secrets,
    mask_params,
    params_secrets,
    redactor,
)
from executus_nb.sinks import JSONLSink, OTelSink
from tests.openai_server import Fail, Reply, ToolCall, ToolCalls

pytest_plugins = ["tests.conftest_server"]

WAIT = 120  # a guard against hanging, not a speed bound (the first run imports litellm)

# Not "sk-…" shaped: litellm masks those itself; these test our own redaction.
API_KEY = "tokA1b2C3d4E5f6G7h8"
XHEADER_KEY = "xhdrK9j8H7g6F5d4S3a2"
HEADER_KEY = "hdrsQ1w2E3r4T5y6U7i8"
URL_USER, URL_PASSWORD = "svcuser01", "pwZ9x8C7v6B5n4M3"
QUERY_KEY = "qryK3y0123456789ab"
ENV_KEY = "envT0k3nZ1Y2X3W4V5U6"
FANOUT_KEY = "fanK8e7y6Q5w4E3r2T1y"
SECRETS = [API_KEY, XHEADER_KEY, HEADER_KEY, URL_PASSWORD, QUERY_KEY, ENV_KEY, FANOUT_KEY]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def echo_of(secrets: list[str]) -> str:
    """What a careless provider sends back: each secret, its base64 forms, a prefix, Basic auth of it."""
    parts = []
    for s in secrets:
        parts += [
            s,
            b64(s),
            base64.urlsafe_b64encode(s.encode()).decode().rstrip("="),
            s[:10],
            "Basic " + b64(f"{URL_USER}:{s}"),
        ]
    parts.append("Basic " + b64(f"{URL_USER}:{URL_PASSWORD}"))
    return " | ".join(parts)


ECHO = echo_of([s for s in SECRETS if s != FANOUT_KEY])  # what runs echo before the fan-out model exists
FAN_ECHO = echo_of(SECRETS)


def forbidden(secret: str) -> list[str]:
    """What must never show: the secret's 8-char prefix (so also it whole), its base64 forms, Basic auth."""
    return [
        secret[:8],
        b64(secret)[:8],
        base64.urlsafe_b64encode(secret.encode()).decode()[:8],
        b64(f"{URL_USER}:{secret}")[8:16],
        b64(secret),
    ]


def leaks(texts: dict[str, str], secrets: list[str] = SECRETS) -> list[tuple[str, str]]:
    return [(where, bad) for where, text in texts.items() for s in secrets for bad in forbidden(s) if bad in text]


def chain_texts(exc: BaseException) -> list[str]:
    """Everything readable from an exception and its whole ``__cause__``/``__context__`` chain."""
    out, seen, stack = [], set(), [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        out += [str(e), repr(e), repr(e.args), repr(vars(e)), "".join(traceback.format_exception(e))]
        if hasattr(e, "errors"):
            out.append(repr(e.errors()))
        stack += [e.__cause__, e.__context__]
    return out


def widget_states(widget) -> str:
    """The state a widget tree sends to the browser, as JSON text."""
    states, stack = [], [widget]
    while stack:
        w = stack.pop()
        states.append(json.dumps(w.get_state(), default=str))
        stack += list(getattr(w, "children", ()))
    return "\n".join(states)


@tool
def lookup(q: str) -> str:
    """Look something up (this one repeats its query back)."""
    return f"found: {q}"


# -- the forms of a secret -------------------------------------------------------------------

KEY = "Zk4Pq9Lm2Xw7Rt5Nv8Bc"


@pytest.mark.parametrize("prefix", ["", "u:", "ab", "Bearer ", "user:"], ids=["alone", "1", "2", "bearer", "basic"])
def test_base64_of_a_secret_is_redacted_at_any_alignment_and_alphabet(prefix):
    r = Redactor()
    r.add(KEY)
    raw = (prefix + KEY + "?tail").encode()
    for encoded in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("=")):
        clean = r.redact(f"header: {encoded} end")
        assert clean.count("***") == 1 and clean.startswith("header: ") and clean.endswith(" end")
        inner = base64.b64encode(KEY.encode()).decode()
        assert inner[:8] not in clean and encoded[4:-4] not in clean


def test_prefixes_of_8_or_more_characters_are_redacted_shorter_ones_are_not():
    r = Redactor()
    r.add(KEY)
    for n in range(8, len(KEY) + 1):
        assert r.redact(f"key={KEY[:n]}!") == "key=***!"
    assert r.redact(f"key={KEY[:7]}!") == f"key={KEY[:7]}!"  # too short to tell from other text
    assert r.redact(f"a {KEY}{KEY} b") == "a ****** b"
    assert r.redact("nothing to see") == "nothing to see"


def test_percent_encoded_and_padded_forms_are_redacted():
    r = Redactor()
    r.add("p@ss/word+key=1")
    assert r.redact("u=p%40ss%2Fword%2Bkey%3D1&x=1") == "u=***&x=1"
    assert r.redact(b64("p@ss/word+key=1")) == "***"


def test_values_shorter_than_6_characters_are_not_secrets():
    r = Redactor()
    r.add("abc", "", None, 123456)
    assert not r.active and r.redact("abc 123456") == "abc 123456"


def test_scrub_redacts_deeply_and_returns_clean_values_unchanged():
    r = Redactor()
    r.add(KEY)
    clean = {"a": ["x", {"b": ("y", 1, 2.5, None)}]}
    assert r.scrub(clean) is clean
    dirty = {"a": [f"k {KEY}", {KEY: (KEY[:9], 1)}], "n": 3}
    assert r.scrub(dirty) == {"a": ["k ***", {"***": ("***", 1)}], "n": 3}
    assert dirty["a"][0] == f"k {KEY}"  # the original is not modified


# -- which values are secrets ------------------------------------------------------------------


def test_secret_values_come_from_keys_every_private_header_and_url_credentials():
    params = {
        "api_key": "k-0123456789",
        "max_tokens": 100000,  # a count, not a secret
        "aws_secret_access_key": "aws-secret-0123",
        "extra_headers": {
            "Authorization": "Bearer bearer-0123456",
            "X-Custom": "custom-0123456",
            "Content-Type": "application/json",
            "anthropic-version": "2023-06-01",
        },
        "headers": {
            "Proxy-Authorization": "Basic " + b64("proxyuser:proxy-pass-01"),
            "X-Auth": "SSWS ssws-0123456",
            "Cookie": "session=cookie-0123456; theme=dark",
        },
        "base_url": "https://h.example/callback#access_token=fragment-0123",
        "api_base": "https://urluser:url-pass-01@h.example/v1?api-version=2024-02-01&key=query-key-01&sig=sig-0123456",
    }
    found = set(params_secrets(params))
    assert {
        "k-0123456789",
        "aws-secret-0123",
        "bearer-0123456",
        "custom-0123456",
        "proxyuser:proxy-pass-01",
        "proxy-pass-01",
        "urluser:url-pass-01",
        "url-pass-01",
        "query-key-01",
        "sig-0123456",
        "ssws-0123456",
        "cookie-0123456",
        "fragment-0123",
    } <= found
    for public in ("application/json", "2023-06-01", "2024-02-01", "100000", "Bearer bearer-0123456"):
        assert public not in found


def test_structured_secrets_give_their_secret_parts_not_their_boilerplate():
    pem = (
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nQWxhZGRpbjpvcGVuIHNlc2FtZQ\n"
        "-----END PRIVATE KEY-----\n"
    )
    creds = json.dumps(
        {
            "type": "service_account",
            "project_id": "my-project-123",
            "private_key": pem,
            "client_secret": "client-secret-0123",
        }
    )
    found = set(params_secrets({"vertex_credentials": creds}))
    assert "client-secret-0123" in found and "QWxhZGRpbjpvcGVuIHNlc2FtZQ" in found
    assert not any(v.startswith(("-----", "{", "service_account", "my-project")) for v in found)


def test_environment_secrets_are_secret_named_values_and_url_credentials_not_paths():
    env = {
        "MY_SERVICE_TOKEN": "env-token-0123",
        "DB_PASS": "db-pass-0123",
        "GIT_AUTHOR_NAME": "Ada Lovelace",
        "GITHUB_PAT": "github-pat-0123",
        "PASSPORT_OFFICE": "Somewhere far",
        "GOOGLE_APPLICATION_CREDENTIALS": "/home/me/sa.json",
        "SSH_AUTH_SOCK": "/tmp/ssh-x/agent.1",
        "DATABASE_URL": "postgres://dbuser:dburl-pass-01@db/app",
        "MAX_TOKENS": "200000",
    }
    found = set(environment_secrets(env))
    assert {"env-token-0123", "db-pass-0123", "dburl-pass-01", "github-pat-0123"} <= found
    assert not found & {"Ada Lovelace", "Somewhere far", "/home/me/sa.json", "/tmp/ssh-x/agent.1", "200000"}


def test_reprs_and_dumps_mask_keys_private_headers_and_url_credentials():
    params = {
        "model": "openai/x",
        "api_key": API_KEY,
        "extra_headers": {"X-Api-Key": XHEADER_KEY, "anthropic-version": "2023-06-01"},
        "headers": {"Authorization": f"Bearer {HEADER_KEY}"},
        "api_base": f"http://{URL_USER}:{URL_PASSWORD}@h.example/v1?key={QUERY_KEY}&api-version=1",
    }
    agent = Agent(name="masked", model=params)
    texts = {
        "repr(agent)": repr(agent),
        "str(agent)": str(agent),
        "dump": agent.model_dump_json(),
        "dict dump": repr(agent.model_dump()),
        "repr(spec)": repr(agent.model),
        "tier": repr(Executor(tiers={"t": [params]}).tiers),
    }
    assert leaks(texts) == []
    shown = mask_params(agent.model.params)
    assert shown["extra_headers"] == {"X-Api-Key": "***", "anthropic-version": "2023-06-01"}
    assert shown["api_base"] == "http://***@h.example/v1?key=***&api-version=1"
    assert agent.model.params["api_key"] == API_KEY  # still usable for calls


# -- errors carry no secret in their chain ---------------------------------------------------------

BAD_CONFIGS = {
    "agent model without a name": lambda: Agent(
        model={"api_key": API_KEY, "extra_headers": {"X-Api-Key": XHEADER_KEY}}
    ),
    "agent bad bound": lambda: Agent(
        model={"model": "openai/x", "api_key": API_KEY, "headers": {"Authorization": f"Bearer {HEADER_KEY}"}},
        max_steps=-1,
    ),
    "agent bad model type": lambda: Agent(model={"model": 12345, "api_key": API_KEY}),
    "spec": lambda: ModelSpec.model_validate({"model": "", "api_key": API_KEY}),
    "executor default model": lambda: Executor(model={"api_key": API_KEY}),
    "executor tier": lambda: Executor(tiers={"fast": [{"api_key": API_KEY, "api_base": f"http://h/?key={QUERY_KEY}"}]}),
    "tier extra field": lambda: Executor(
        tiers={"fast": {"models": [{"model": "openai/x", "api_key": API_KEY}], "temprature": 0.1}}
    ),
}


@pytest.mark.parametrize("make", list(BAD_CONFIGS.values()), ids=list(BAD_CONFIGS))
def test_a_configuration_error_has_no_secret_anywhere_in_its_chain(make):
    with pytest.raises(ConfigError) as info:
        make()
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert leaks({f"chain {i}": t for i, t in enumerate(chain_texts(info.value))}) == []


@pytest.mark.parametrize(
    "suffix, text",
    [
        (".yaml", f'fast:\n  - model: openai/x\n    api_key: "{API_KEY}\n  bad: ['),
        (".toml", f'[fast]\nmodels = [{{model = "openai/x", api_key = "{API_KEY}" bad}}]'),
    ],
)
def test_a_tier_file_with_a_syntax_error_does_not_quote_its_key(tmp_path, suffix, text):
    path = tmp_path / f"tiers{suffix}"
    path.write_text(text)
    for source in (path, text) if suffix == ".toml" else (path,):
        with pytest.raises(ConfigError, match="line") as info:
            Executor(tiers=source)
        assert info.value.__context__ is None
        assert leaks({f"chain {i}": t for i, t in enumerate(chain_texts(info.value))}) == []


def test_a_model_call_error_has_no_secret_in_its_chain(openai_server):
    from executus_nb.model.call import complete

    openai_server.fail(500, {"error": {"message": f"bad key {API_KEY} ({b64(API_KEY)}) prefix {API_KEY[:10]}"}})
    spec = ModelSpec.model_validate(
        {"model": "openai/test-model", "api_base": openai_server.base_url, "api_key": API_KEY, "timeout": 10}
    )
    with pytest.raises(ModelCallError) as info:
        asyncio.run(complete(spec, [{"role": "user", "content": "hi"}]))
    assert "bad key ***" in str(info.value)
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert leaks({f"chain {i}": t for i, t in enumerate(chain_texts(info.value))}) == []


# -- logs -------------------------------------------------------------------------------------------


def test_log_records_of_any_logger_are_redacted(caplog):
    redactor.add("log-secret-0123456789")
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="httpx")
    logging.getLogger("httpx").info("HTTP Request: POST %s", "http://h/v1?key=log-secret-0123456789")
    try:
        raise RuntimeError("failed with log-secret-0123")
    except RuntimeError:
        logging.getLogger("some.library").exception("call failed for %s", "log-secret-01234")
    assert "log-secret" not in caplog.text
    assert "HTTP Request: POST http://h/v1?key=***" in caplog.text and "RuntimeError: failed with ***" in caplog.text
    assert all("log-secret" not in r.getMessage() for r in caplog.records)


def test_a_key_split_across_streamed_chunks_is_redacted_while_streaming():
    from executus_nb.run.log import RunLog

    redactor.add("stream-secret-0123456789")
    log = RunLog("r", "a")
    for piece in ("the key is stre", "am-sec", "ret-0123", "456789 ok"):
        log.stream_text(1, piece)
    assert log.partial == {1: "the key is *** ok"}


# -- every artifact of real runs ----------------------------------------------------------------------


def test_every_artifact_of_runs_that_saw_echoed_secrets_is_clean(openai_server, tmp_path, monkeypatch, caplog, capfd):
    """The secrets of every kind, echoed in every form, show nowhere a user or a collector can read."""
    monkeypatch.setenv("MY_SERVICE_TOKEN", ENV_KEY)
    monkeypatch.chdir(tmp_path)  # the default cache folder, if any, lands here
    caplog.set_level(logging.DEBUG)

    def respond(body):
        if body.get("stream") or any(m.get("role") == "tool" for m in body.get("messages", [])):
            return Reply(f"done: {ECHO}")
        return None

    openai_server.responder = respond
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    jsonl = JSONLSink(tmp_path / "events.jsonl")
    cache_path = tmp_path / "cache" / "responses.sqlite"
    executor = Executor(sinks=[jsonl, OTelSink(provider, capture_content=True)], cache=cache_path)

    model = {
        "model": "openai/test-model",
        "api_base": openai_server.base_url,
        "api_key": API_KEY,
        "timeout": 10,
        "extra_headers": {"X-Api-Key": XHEADER_KEY},
        "headers": {"api-key": HEADER_KEY},
    }
    agent = Agent(name="echo", tools=[lookup], model=model)
    url_agent = Agent(
        name="url",
        model={
            **model,
            "api_base": openai_server.base_url.replace("http://", f"http://{URL_USER}:{URL_PASSWORD}@")
            + f"?key={QUERY_KEY}",
        },
    )

    # 1. the provider's error body echoes every form
    openai_server.enqueue(Fail(500, json.dumps({"error": {"message": f"invalid credentials: {ECHO}"}})))
    failed = executor.run(agent, "first")
    assert failed.wait(timeout=WAIT).status is RunStatus.FAILED
    # 2. tool-call arguments and the reply echo them (the tool repeats its arguments too)
    openai_server.enqueue(ToolCalls((ToolCall("lookup", json.dumps({"q": ECHO})),)))
    replied = executor.run(agent, "second")
    replied.wait(timeout=WAIT)  # one at a time: each run takes its own queued turn
    # 3. the same, streamed
    openai_server.enqueue(ToolCalls((ToolCall("lookup", json.dumps({"q": ECHO})),)))
    streamed = executor.run(agent.model_copy(update={"stream": True, "name": "streamed"}), "third")
    # 4. userinfo and query in api_base (the client refuses them: its error names the URL)
    streamed.wait(timeout=WAIT)
    by_url = executor.run(url_agent, "fourth")
    by_url.wait(timeout=WAIT)
    runs = [failed, replied, streamed, by_url]
    assert openai_server.pending == 0
    assert replied.result.ok and streamed.result.ok, (replied.result, streamed.result)
    # 5. a fan-out model's own key
    openai_server.default = Reply(f"fan: {FAN_ECHO}")
    fan = executor.fanout(Agent(name="fan"), ["p"], models=[{**model, "api_key": FANOUT_KEY}])
    fan.wait(timeout=WAIT)
    runs += [cell.run for cell in fan.cells]
    with pytest.raises(ModelCallError) as generated:
        openai_server.enqueue(Fail(500, json.dumps({"error": {"message": ECHO}})))
        from pydantic import BaseModel

        class Answer(BaseModel):
            text: str

        executor.generate(Answer, "fifth", model=model, attempts=1)

    # The secrets really went out, and really came back.
    sent = openai_server.requests[0]
    assert sent.api_key == API_KEY and sent.headers["x-api-key"] == XHEADER_KEY
    assert sent.headers["api-key"] == HEADER_KEY
    assert "***" in replied.result.output and "***" in failed.result.error.message

    texts: dict[str, str] = {}
    for i, run in enumerate(runs):
        result = run.result
        texts.update({f"run {i} event {ev.seq}": ev.model_dump_json() for ev in run.events})
        texts.update({f"run {i} event repr {ev.seq}": repr(ev) for ev in run.events})
        texts[f"run {i} result"] = repr(result) + str(result) + result.model_dump_json() + str(result.error)
        texts[f"run {i} repr"] = repr(run) + repr(run.agent)
        view = run.view()
        texts[f"run {i} html"] = view.html() + json.dumps(view.mimebundle(), default=str)
        texts[f"run {i} widget"] = widget_states(view.widget)
        for name in ("steps_df", "tool_calls_df", "usage_df"):
            texts[f"run {i} {name}"] = getattr(run, name)().to_csv()
    for name in ("runs_df", "steps_df", "usage_df"):
        texts[f"executor.{name}"] = getattr(executor, name)().to_csv()
    texts["fanout.to_df"] = fan.to_df().to_csv()
    texts["fanout view"] = fan.view().html() + widget_states(fan.view().widget)
    texts["reprs"] = repr(executor) + repr(executor.tiers) + repr(agent) + agent.model_dump_json(exclude={"tools"})
    texts.update({f"generate error {i}": t for i, t in enumerate(chain_texts(generated.value))})
    jsonl.close()
    texts["jsonl"] = (tmp_path / "events.jsonl").read_text()
    texts["otel spans"] = "\n".join(span.to_json() for span in exporter.get_finished_spans())
    cache_files = [p for p in (tmp_path / "cache").iterdir() if p.is_file()]
    assert cache_files and executor.cache is not None and len(executor.cache) >= 1
    texts.update({f"cache file {p.name}": p.read_bytes().decode("latin-1") for p in cache_files})
    texts["logs"] = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    out, err = capfd.readouterr()
    texts["stdout/stderr"] = out + err

    assert len(exporter.get_finished_spans()) > 10 and "***" in texts["jsonl"]
    assert leaks(texts) == []


def test_a_tool_call_waiting_for_approval_shows_its_arguments_redacted():
    from executus_nb import sim
    from executus_nb.tool.policy import Policy

    @tool(permission="ask")
    def send(to: str) -> str:
        """Send a message."""
        return "sent"

    key = "apprK3y0123456789zz"
    agent = Agent(
        name="asker",
        tools=[send],
        model={"model": sim.scripted([sim.call("send", to=f"x {key}"), sim.reply("done")]), "api_key": key},
    )
    run = Executor(policy=Policy(approver="code", ask_timeout_s=60)).run(agent, "go")
    request = run.wait_for_approval(timeout=WAIT)
    assert request is not None
    shown = repr(request) + repr(run.pending_approvals)
    assert request.arguments == {"to": "x ***"} and key[:8] not in shown
    run.approve(request.call_id)
    assert run.wait(timeout=WAIT).ok
