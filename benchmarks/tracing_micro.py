"""The per-call cost of tracing, in microseconds per call with one upstream attempt: everything the gateway does for
a traced call (the inbound hook, the attempt span and its traceparent, the call's span at its record), in process,
with no HTTP. Tracing off costs one attribute check per call and one context-variable read per upstream request.

    PYTHONPATH=src python -m benchmarks.tracing_micro
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from switchyard.catalog import Catalog
from switchyard.config import parse_config
from switchyard.messages import ChatResponse, Choice, FinishReason, Message, Role, TextPart, Usage
from switchyard.pipeline import CallContext, Gateway
from switchyard.records import CallRecord
from switchyard.routing import Attempt
from switchyard.telemetry.traceparent import UPSTREAM
from switchyard.telemetry.tracing import Tracing

N = 20_000
CALLER = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}


class Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def main() -> None:
    cfg = parse_config({"store": "sqlite:///:memory:", "providers": {"sim": {"type": "simulated"}},
                        "deployments": [{"name": "sim-a", "provider": "sim", "price": {"input": 1, "output": 2}}],
                        "tracing": {"enabled": True, "exporter": "none"}}, "<bench>", {})
    gw = Gateway(cfg, Catalog.from_config(cfg))
    dep = gw.catalog.deployments["sim-a"]
    usage = Usage(input_tokens=10, output_tokens=20)
    resp = ChatResponse(id="c1", model="sim-a", created=0, usage=usage,
                        choices=[Choice(0, Message(Role.ASSISTANT, [TextPart("hi")]), FinishReason.STOP)])

    def run(tracing: Tracing | None, headers: dict[str, str]) -> float:
        start = time.perf_counter()
        for i in range(N):
            ctx = CallContext(request_id=f"req_{i:032x}")
            if tracing is not None:
                tracing.inbound(ctx, headers)
            rec = Attempt("sim-a", provider="sim")
            traced = tracing.attempt(rec, dep) if tracing is not None else None
            UPSTREAM.get()  # what the HTTP provider reads
            result = tracing.attempt_result(traced, rec, resp, False) if traced is not None else resp
            rec.outcome = "ok"
            if traced is not None:
                tracing.attempt_done(traced, rec)
            ctx.deployment = dep
            ctx.attempts.append(rec)
            record = CallRecord(request_id=ctx.request_id, ts=0.0, principal_id="key:user", endpoint="chat",
                                model="sim-a", route=None, deployment="sim-a", provider="sim", status="ok",
                                http_status=200, usage=result.usage or usage, cost=0.0001, latency_ms=1.0,
                                ttft_ms=None, attempts=1)
            if tracing is not None:
                tracing.finish(ctx, record)
        return (time.perf_counter() - start) / N * 1e6

    base = run(None, {})
    print(f"tracing off (the loop itself): {base:.2f} us/call")
    for name, ratio, processor, headers in (
            ("unsampled (sample_ratio 0)", 0.0, False, {}),
            ("sampled, no exporter", 1.0, False, {}),
            ("sampled, batch processor", 1.0, True, {}),
            ("sampled, under a caller's traceparent", 1.0, True, CALLER)):
        provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(ratio)))
        if processor:
            provider.add_span_processor(BatchSpanProcessor(Discard(), max_queue_size=N * 2))
        t = Tracing(cfg.tracing, provider)
        run(t, headers)  # warm up
        print(f"{name}: +{run(t, headers) - base:.2f} us/call")
        provider.shutdown()


if __name__ == "__main__":
    main()
