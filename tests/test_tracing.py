"""OpenTelemetry traces over HTTP: a SERVER span per call and a CLIENT span per upstream attempt, after the gen_ai
semantic conventions; a fallback's failed attempt; a caller's ``traceparent`` honoured and the attempt's sent
upstream; a stream's span ended at its end with its usage; no prompt text on any span; sampling; and, with tracing
off, no OpenTelemetry imported at all. Spans are captured with the SDK's in-memory exporter."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, StatusCode

from switchyard.config import ConfigError, parse_config
from switchyard.telemetry import tracing
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import USER_KEY, RunningGateway, base_config, run_gateway

HI: Any = [{"role": "user", "content": "hi"}]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.configure(provider)
    try:
        yield exporter
    finally:
        tracing.configure(None)
        provider.shutdown()


def traced(upstream: str, **overrides: Any) -> dict[str, Any]:
    cfg = base_config(
        providers={"up": {"type": "openai", "base_url": upstream + "/v1", "api_key": "sk-upstream-secret"},
                   "sim": {"type": "simulated", "output_tokens": 5}},
        deployments=[{"name": "gpt-4o-mini", "provider": "up", "price": {"input": 1.0, "output": 2.0}},
                     {"name": "text-embedding-3-small", "provider": "up", "capabilities": ["embeddings"]},
                     {"name": "sim-b", "provider": "sim"}],
        routes={"r": {"strategy": "priority", "targets": ["gpt-4o-mini", "sim-b"]}},
        tracing={"enabled": True, "exporter": "none"},
    )
    cfg.update(overrides)
    return cfg


@contextlib.contextmanager
def client(gw: RunningGateway, **headers: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0, default_headers=headers) as c:
        yield c


def finished(exporter: InMemorySpanExporter, n: int) -> list[ReadableSpan]:
    """The spans exported so far, once there are ``n`` (the request span ends just after the reply is sent)."""
    deadline = time.monotonic() + 10
    while len(exporter.get_finished_spans()) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    got = list(exporter.get_finished_spans())
    assert len(got) == n, [s.name for s in got]
    return got


def split(got: list[ReadableSpan]) -> tuple[ReadableSpan, list[ReadableSpan]]:
    servers = [s for s in got if s.kind is SpanKind.SERVER]
    assert len(servers) == 1
    return servers[0], sorted((s for s in got if s.kind is SpanKind.CLIENT), key=lambda s: s.start_time or 0)


def test_a_call_makes_a_request_span_and_an_attempt_span(fake_openai: FakeOpenAI,
                                                         spans: InMemorySpanExporter) -> None:
    assert fake_openai.base_url is not None
    with run_gateway(traced(fake_openai.base_url)) as gw, client(gw) as c:
        r = c.chat.completions.create(model="gpt-4o-mini", messages=HI, max_tokens=50)
    req, (att,) = split(finished(spans, 2))
    a = req.attributes or {}
    assert req.name == "chat gpt-4o-mini"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.usage.input_tokens"] == r.usage.prompt_tokens  # type: ignore[union-attr]
    assert a["gen_ai.usage.output_tokens"] == r.usage.completion_tokens  # type: ignore[union-attr]
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["gen_ai.request.max_tokens"] == 50
    assert a["switchyard.deployment"] == "gpt-4o-mini"
    assert a["switchyard.status"] == "ok" and a["switchyard.attempts"] == 1
    assert a["switchyard.cost_usd"] > 0
    assert a["switchyard.key_id"]
    assert req.status.status_code is not StatusCode.ERROR
    assert req.parent is None
    b = att.attributes or {}
    assert att.name == "chat gpt-4o-mini"
    assert att.parent is not None and att.parent.span_id == req.context.span_id
    assert att.context.trace_id == req.context.trace_id
    assert b["gen_ai.provider.name"] == "openai" and b["switchyard.deployment"] == "gpt-4o-mini"
    assert b["server.address"] == "127.0.0.1" and isinstance(b["server.port"], int)
    assert b["switchyard.outcome"] == "ok" and "error.type" not in b
    assert b["gen_ai.usage.output_tokens"] == r.usage.completion_tokens  # type: ignore[union-attr]


def test_a_fallback_makes_two_attempt_spans_the_first_an_error(fake_openai: FakeOpenAI,
                                                               spans: InMemorySpanExporter) -> None:
    assert fake_openai.base_url is not None
    with run_gateway(traced(fake_openai.base_url)) as gw, client(gw) as c:
        fake_openai.fail_next(500)
        c.chat.completions.create(model="r", messages=HI)
    req, (first, second) = split(finished(spans, 3))
    a = req.attributes or {}
    assert a["switchyard.route"] == "r" and a["switchyard.attempts"] == 2
    assert a["switchyard.deployment"] == "sim-b" and a["gen_ai.provider.name"] == "switchyard.simulated"
    assert "switchyard.route_reason" in a
    assert first.status.status_code is StatusCode.ERROR
    assert (first.attributes or {})["error.type"] == "502"
    assert (first.attributes or {})["switchyard.deployment"] == "gpt-4o-mini"
    assert second.status.status_code is not StatusCode.ERROR
    assert (second.attributes or {})["switchyard.deployment"] == "sim-b"
    assert all(s.parent is not None and s.parent.span_id == req.context.span_id for s in (first, second))


def test_a_failed_call_is_an_error_span(fake_openai: FakeOpenAI, spans: InMemorySpanExporter) -> None:
    assert fake_openai.base_url is not None
    with run_gateway(traced(fake_openai.base_url)) as gw, client(gw) as c:
        fake_openai.fail_next(503)
        with pytest.raises(openai.APIStatusError):
            c.chat.completions.create(model="gpt-4o-mini", messages=HI)
    req, (att,) = split(finished(spans, 2))
    assert req.status.status_code is StatusCode.ERROR and att.status.status_code is StatusCode.ERROR
    assert (req.attributes or {})["switchyard.status"] == "error"
    assert (req.attributes or {})["error.type"] == "502"


def test_the_callers_traceparent_is_honoured_and_the_attempts_sent_upstream(fake_openai: FakeOpenAI,
                                                                            spans: InMemorySpanExporter) -> None:
    assert fake_openai.base_url is not None
    with run_gateway(traced(fake_openai.base_url)) as gw, \
            client(gw, traceparent=f"00-{TRACE_ID}-{PARENT_ID}-01", tracestate="vendor=abc") as c:
        c.chat.completions.create(model="gpt-4o-mini", messages=HI)
    req, (att,) = split(finished(spans, 2))
    assert f"{req.context.trace_id:032x}" == TRACE_ID
    assert req.parent is not None and f"{req.parent.span_id:016x}" == PARENT_ID and req.parent.is_remote
    sent = fake_openai.last_request.headers
    version, trace_id, parent_id, flags = sent["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
    assert parent_id == f"{att.context.span_id:016x}"
    assert sent["tracestate"] == "vendor=abc"


def test_a_fresh_trace_is_propagated_upstream_too(fake_openai: FakeOpenAI, spans: InMemorySpanExporter) -> None:
    assert fake_openai.base_url is not None
    with run_gateway(traced(fake_openai.base_url)) as gw, client(gw) as c:
        c.embeddings.create(model="text-embedding-3-small", input="hello")
    req, (att,) = split(finished(spans, 2))
    assert req.name == "embeddings text-embedding-3-small"
    assert (req.attributes or {})["gen_ai.operation.name"] == "embeddings"
    _, trace_id, parent_id, _ = fake_openai.last_request.headers["traceparent"].split("-")
    assert trace_id == f"{req.context.trace_id:032x}" and parent_id == f"{att.context.span_id:016x}"


def test_a_stream_span_ends_at_the_end_of_the_stream_with_its_usage(fake_openai: FakeOpenAI,
                                                                    spans: InMemorySpanExporter) -> None:
    assert fake_openai.base_url is not None
    fake_openai.stream_delay(0.1)  # each frame: the stream is still running after its first chunk
    with run_gateway(traced(fake_openai.base_url)) as gw, client(gw) as c:
        stream = c.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True,
                                           stream_options={"include_usage": True})
        first = next(iter(stream))
        assert first is not None
        assert [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER] == []  # open while it runs
        usage = None
        for chunk in stream:
            usage = chunk.usage or usage
    req, (att,) = split(finished(spans, 2))
    assert usage is not None
    a = req.attributes or {}
    assert a["gen_ai.usage.output_tokens"] == usage.completion_tokens > 0
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert (att.attributes or {})["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert att.end_time is not None and req.end_time is not None and att.end_time <= req.end_time


def test_a_stream_whose_client_left_ends_its_span_when_the_drain_ends(fake_openai: FakeOpenAI,
                                                                    spans: InMemorySpanExporter) -> None:
    assert fake_openai.base_url is not None
    fake_openai.set_reply(" ".join(f"word{i:02d}" for i in range(20)))  # 20 completion tokens, one word a chunk
    fake_openai.stream_delay(0.05)
    with run_gateway(traced(fake_openai.base_url)) as gw, client(gw) as c:
        stream = c.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True,
                                           stream_options={"include_usage": True})
        for n, _ in enumerate(stream):
            if n == 3:
                break
        stream.close()
        req, (att,) = split(finished(spans, 2))  # once the drain has read the rest
    a = req.attributes or {}
    assert a["switchyard.status"] == "cancelled" and a["http.response.status_code"] == 499
    assert a["gen_ai.usage.output_tokens"] == 20  # the upstream's own count, read by the drain
    assert req.status.status_code is StatusCode.ERROR and a["error.type"] == "499"
    assert (att.attributes or {})["gen_ai.usage.output_tokens"] == 20


def test_the_anthropic_protocol_is_traced_too(fake_openai: FakeOpenAI, spans: InMemorySpanExporter) -> None:
    assert fake_openai.base_url is not None
    with run_gateway(traced(fake_openai.base_url)) as gw, \
            anthropic.Anthropic(base_url=gw.url, api_key=USER_KEY, max_retries=0,
                                default_headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}) as c:
        msg = c.messages.create(model="gpt-4o-mini", max_tokens=30, messages=[{"role": "user", "content": "hi"}])
    req, (att,) = split(finished(spans, 2))
    a = req.attributes or {}
    assert a["switchyard.protocol"] == "anthropic" and a["gen_ai.request.max_tokens"] == 30
    assert a["gen_ai.usage.output_tokens"] == msg.usage.output_tokens
    assert f"{req.context.trace_id:032x}" == TRACE_ID == f"{att.context.trace_id:032x}"
    assert fake_openai.last_request.headers["traceparent"].split("-")[2] == f"{att.context.span_id:016x}"


def test_no_prompt_or_completion_text_on_any_span(fake_openai: FakeOpenAI, spans: InMemorySpanExporter) -> None:
    assert fake_openai.base_url is not None
    marker = "zebra-quartz-7731"
    fake_openai.set_reply(f"the answer is {marker}-reply")
    with run_gateway(traced(fake_openai.base_url)) as gw, client(gw) as c:
        c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"say {marker}"}])
        fake_openai.fail_next(400, {"error": {"message": f"you said {marker}", "type": "invalid_request_error"}})
        with pytest.raises(openai.BadRequestError):
            c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": marker}])
    got = finished(spans, 4)
    dumped = "".join(s.to_json() for s in got)
    assert "gpt-4o-mini" in dumped  # the dump holds the attributes
    assert marker not in dumped


def test_an_unsampled_call_makes_no_span_but_passes_the_trace_on(fake_openai: FakeOpenAI) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.0)))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.configure(provider)
    assert fake_openai.base_url is not None
    try:
        with run_gateway(traced(fake_openai.base_url)) as gw, client(gw) as c:
            c.chat.completions.create(model="r", messages=HI)
            _, trace_id, _, flags = fake_openai.last_request.headers["traceparent"].split("-")
            assert int(flags, 16) & 1 == 0 and int(trace_id, 16) != 0  # not sampled
            with client(gw, traceparent=f"00-{TRACE_ID}-{PARENT_ID}-01") as sampled:
                sampled.chat.completions.create(model="gpt-4o-mini", messages=HI)  # the caller's decision wins
    finally:
        tracing.configure(None)
    got = finished(exporter, 2)
    assert {f"{s.context.trace_id:032x}" for s in got} == {TRACE_ID}


def test_tracing_from_the_config_builds_its_own_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "edge-gateway")
    cfg = parse_config(base_config(tracing={"enabled": True, "endpoint": "http://127.0.0.1:9/v1/traces",
                                            "sample_ratio": 0.25, "service_name": "ignored"}), "<test>", {})
    t = tracing.Tracing(cfg.tracing)
    try:
        assert t.provider.resource.attributes["service.name"] == "edge-gateway"  # OTEL_SERVICE_NAME wins
        assert "0.25" in t.provider.sampler.get_description()
    finally:
        t.provider.shutdown()


def test_bad_tracing_config_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="sample_ratio"):
        parse_config(base_config(tracing={"enabled": True, "sample_ratio": 2}), "<test>", {})
    with pytest.raises(ConfigError, match="exporter"):
        parse_config(base_config(tracing={"enabled": True, "exporter": "jaeger"}), "<test>", {})


def python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with this one's import path."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def test_a_missing_extra_names_the_install_command() -> None:
    out = python("import sys; sys.modules['opentelemetry'] = None\n"
                 "from switchyard.config import ConfigError, parse_config\n"
                 "try:\n"
                 "    parse_config({'tracing': {'enabled': True}}, '<t>', {})\n"
                 "except ConfigError as e:\n"
                 "    print(e)\n")
    assert "pip install 'switchyard[otel]'" in out.stdout, out.stderr


def test_tracing_off_imports_no_opentelemetry_and_makes_no_span(fake_openai: FakeOpenAI) -> None:
    assert fake_openai.base_url is not None
    cfg = traced(fake_openai.base_url)
    del cfg["tracing"]
    out = python("import json, sys, openai\n"
                 "from tests.support.gateway import USER_KEY, run_gateway\n"
                 f"cfg = json.loads({json.dumps(json.dumps(cfg))})\n"
                 "with run_gateway(cfg) as gw:\n"
                 "    assert gw.gateway.tracing is None and gw.gateway.executor.tracer is None\n"
                 "    c = openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0)\n"
                 "    c.chat.completions.create(model='gpt-4o-mini', messages=[{'role': 'user', 'content': 'hi'}])\n"
                 "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert "traceparent" not in fake_openai.last_request.headers
