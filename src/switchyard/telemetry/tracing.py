"""OpenTelemetry traces, after the gen_ai semantic conventions: a SERVER span for each call and a CLIENT span for
each upstream attempt under it, the W3C ``traceparent`` honoured inbound and sent upstream.

Only :func:`install` (called when ``tracing.enabled``) imports OpenTelemetry, from the ``switchyard[otel]`` extra:
a gateway without tracing pays one attribute check per call and one context-variable read per upstream request.

How a call is traced:

* the endpoint hands the request's headers to :meth:`Tracing.inbound`, which keeps the caller's trace context (and
  the call, in a context variable the executor's tasks inherit);
* the executor opens an attempt span around each upstream attempt (:meth:`Tracing.attempt`), and puts its
  ``traceparent`` in :data:`.traceparent.UPSTREAM`, which the HTTP provider base adds to the upstream request;
  the request span is started with the first attempt, back-dated to the call's start;
* the call's record ends it all (:meth:`Tracing.finish`, chained to the gateway's telemetry observer): a stream's
  at the end of the stream (a drained one, at the end of its drain).

An unsampled call creates no span at all: its upstream requests carry the caller's trace id with the sampled flag
off. Spans carry ids, names from the configuration, numbers and status words: never a prompt, a completion or an
upstream's error text (which may echo the prompt), whatever the key's logging mode.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ..config.telemetry import MISSING_OTEL
from ..messages import Finish
from .traceparent import UPSTREAM

if TYPE_CHECKING:
    from ..catalog import Deployment
    from ..config import Config
    from ..config.telemetry import TracingConfig
    from ..records import CallRecord
    from ..routing import Attempt
    from ..stages import CallContext

# the call in progress in this task (and in the hedges it starts)
_CALL: ContextVar[CallContext | None] = ContextVar("switchyard_traced_call", default=None)

# gen_ai.provider.name: the semantic conventions' well-known values, by provider type
_GEN_AI_PROVIDER = {"openai": "openai", "anthropic": "anthropic", "bedrock": "aws.bedrock",
                    "gemini": "gcp.gemini", "llamacpp": "llama.cpp", "simulated": "switchyard.simulated"}

_override: Any = None  # a TracerProvider handed in by configure() (tests, benchmarks)


def configure(provider: Any = None) -> None:
    """Use ``provider`` (an SDK ``TracerProvider``, e.g. with an in-memory exporter) for every gateway installed
    from now on, instead of one built from the config; None: back to the config."""
    global _override
    _override = provider


def tracing_for(config: Config) -> Tracing:
    """The tracer of ``config`` (``tracing.enabled``): the app factory hands it to the gateway's endpoints and
    executor, and to the telemetry stage, which ends each call's trace."""
    return Tracing(config.tracing, _override)


def _provider_from(cfg: TracingConfig) -> Any:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read by Resource.create; OTEL_SERVICE_NAME wins
    attrs = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: cfg.service_name}
    provider = TracerProvider(resource=Resource.create(attrs),
                              sampler=ParentBased(TraceIdRatioBased(cfg.sample_ratio)))
    if cfg.exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # unset: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT / _HEADERS, as the exporter reads
        exporter = OTLPSpanExporter(endpoint=cfg.endpoint, headers=cfg.headers or None)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


class _Trace:
    """A call's trace: the caller's context, its request span once started, the attempt spans still open."""

    __slots__ = ("finish_reasons", "held", "parent", "response_model", "span", "start_ns", "state", "unsampled")

    def __init__(self, parent: Any, start_ns: int, state: str | None) -> None:
        self.parent = parent  # an OTel Context holding the caller's span context, or None
        self.start_ns = start_ns
        self.state = state  # the caller's tracestate header, passed on as is
        self.span: Any = None
        self.unsampled: dict[str, str] | None = None  # the upstream headers of an unsampled call
        self.held: list[tuple[Any, Attempt]] = []  # a stream's attempt spans: ended with the call
        self.finish_reasons: list[str] = []
        self.response_model: str | None = None


class Tracing:
    """One gateway's tracer (see the module's docstring)."""

    def __init__(self, cfg: TracingConfig, provider: Any = None) -> None:
        try:
            from opentelemetry import trace
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        except ImportError as e:  # config validation says so first; this is for a gateway built by hand
            raise RuntimeError(MISSING_OTEL) from e
        self.provider = provider if provider is not None else _provider_from(cfg)
        self.tracer = self.provider.get_tracer("switchyard")
        self._propagator = TraceContextTextMapPropagator()
        self._trace = trace
        self._server, self._client = trace.SpanKind.SERVER, trace.SpanKind.CLIENT
        self._error = trace.StatusCode.ERROR
        self._addresses: dict[str, Any] = {}  # deployment: (host, port) of its upstream, or None

    # --- the call ------------------------------------------------------------------------------------------

    def inbound(self, ctx: CallContext, headers: Mapping[str, str]) -> None:
        """A call begins: keep the caller's trace context (W3C ``traceparent``/``tracestate``)."""
        parent = self._propagator.extract(headers) if "traceparent" in headers else None
        ctx.trace = _Trace(parent, time.time_ns(), headers.get("tracestate"))
        _CALL.set(ctx)

    def _request_span(self, ctx: CallContext, t: _Trace) -> Any:
        """The call's span, started on first need (back-dated to the call's start); None when unsampled."""
        if t.span is None and t.unsampled is None:
            span = self.tracer.start_span(ctx.endpoint, context=t.parent, kind=self._server, start_time=t.start_ns)
            if span.is_recording():
                t.span = span
            else:
                t.unsampled = self._headers(span.get_span_context(), t.state)
        return t.span

    @staticmethod
    def _headers(sc: Any, state: str | None) -> dict[str, str]:
        h = {"traceparent": f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags):02x}"}
        if state:
            h["tracestate"] = state
        return h

    # --- attempts (called by the executor) -----------------------------------------------------------------

    def attempt(self, rec: Attempt, dep: Deployment) -> Any:
        """An upstream attempt starts: its span (under the call's), its traceparent for the upstream request.
        A handle for :meth:`attempt_done`, or None when the call is not traced."""
        ctx = _CALL.get()
        if ctx is None or not isinstance(t := ctx.trace, _Trace):
            return None
        parent = self._request_span(ctx, t)
        if parent is None:
            return None, UPSTREAM.set(t.unsampled), None
        model = dep.target.model
        op = _operation(ctx)
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": op,
            "gen_ai.provider.name": _provider_name(dep),
            "gen_ai.request.model": model,
            "switchyard.deployment": dep.name,
            "switchyard.provider": dep.provider_name,
            "switchyard.hedge": rec.hedge,
        }
        address = self._addresses.get(dep.name, ())
        if address == ():
            address = self._addresses[dep.name] = _address(dep)
        if address is not None:
            attrs["server.address"], attrs["server.port"] = address
        span = self.tracer.start_span(f"{op} {model}", context=self._trace.set_span_in_context(parent),
                                      kind=self._client, attributes=attrs)
        return span, UPSTREAM.set(self._headers(span.get_span_context(), t.state)), t

    def attempt_result(self, handle: Any, rec: Attempt, result: Any, stream: bool) -> Any:
        """The attempt's result, seen (and for a stream, followed for its finish reasons)."""
        span, _, t = handle
        if span is None:
            return result
        if stream:
            first, rest = result
            _scan(first, t.finish_reasons)
            t.held.append((span, rec))
            return first, _follow(rest, t.finish_reasons)
        attrs: dict[str, Any] = {}
        usage = getattr(result, "usage", None)
        if usage is not None:
            attrs["gen_ai.usage.input_tokens"] = usage.input_tokens
            attrs["gen_ai.usage.output_tokens"] = usage.output_tokens
        model = getattr(result, "model", None)
        if model:
            attrs["gen_ai.response.model"] = t.response_model = model
        choices = getattr(result, "choices", None)
        if choices:
            reasons = [str(c.finish_reason) for c in choices if c.finish_reason is not None]
            attrs["gen_ai.response.finish_reasons"] = t.finish_reasons = reasons
        span.set_attributes(attrs)
        return result

    def attempt_done(self, handle: Any, rec: Attempt) -> None:
        """The attempt ended (a stream's: its first chunk came): end its span, unless a stream holds it."""
        span, token, t = handle
        UPSTREAM.reset(token)
        if span is None:
            return
        attrs: dict[str, Any] = {"switchyard.outcome": rec.outcome}
        if rec.status is not None:
            attrs["http.response.status_code"] = rec.status
        if rec.outcome not in ("ok", "lost", "cancelled"):
            attrs["error.type"] = _error_type(rec.status, rec.outcome)
            span.set_status(self._error)
        span.set_attributes(attrs)
        if t is None or not any(held is span for held, _ in t.held):
            span.end()

    # --- the end (chained to the telemetry observer) -------------------------------------------------------

    def finish(self, ctx: CallContext, rec: CallRecord) -> None:
        t = ctx.trace
        if not isinstance(t, _Trace):
            return
        span = self._request_span(ctx, t)
        if span is None:
            return
        op = _operation(ctx)
        u = rec.usage
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": op,
            "gen_ai.request.model": rec.model,
            "gen_ai.usage.input_tokens": u.input_tokens,
            "gen_ai.usage.output_tokens": u.output_tokens,
            "switchyard.request_id": rec.request_id,
            "switchyard.protocol": ctx.protocol,
            "switchyard.status": rec.status,
            "switchyard.attempts": rec.attempts,
            "switchyard.cost_usd": rec.total_cost,
            "http.response.status_code": rec.http_status,
        }
        if t.finish_reasons:
            attrs["gen_ai.response.finish_reasons"] = t.finish_reasons
        if t.response_model:
            attrs["gen_ai.response.model"] = t.response_model
        plan = ctx.plan
        if plan is not None:
            if plan.max_tokens is not None:
                attrs["gen_ai.request.max_tokens"] = plan.max_tokens
            if plan.route is not None:
                attrs["switchyard.route"] = plan.route
            attrs["switchyard.route_reason"] = plan.reason
        dep = ctx.deployment
        if dep is not None:
            attrs["gen_ai.provider.name"] = _provider_name(dep)
            attrs["switchyard.deployment"] = dep.name
        if rec.principal_id is not None:
            attrs["switchyard.key_id"] = rec.principal_id
        if rec.status != "ok":
            attrs["error.type"] = _error_type(rec.http_status, rec.status)
            span.set_status(self._error)
        span.update_name(f"{op} {rec.model}")
        span.set_attributes(attrs)
        for held, a in t.held:
            if a.outcome == "lost":  # a hedged stream that lost the race: not this call's usage
                held.set_attribute("switchyard.outcome", "lost")
                held.end()
                continue
            done: dict[str, Any] = {"gen_ai.usage.input_tokens": u.input_tokens,
                                    "gen_ai.usage.output_tokens": u.output_tokens}
            if t.finish_reasons:
                done["gen_ai.response.finish_reasons"] = t.finish_reasons
            if rec.status != "ok":
                done["error.type"] = _error_type(rec.http_status, rec.status)
                held.set_status(self._error)
            held.set_attributes(done)
            held.end()
        t.held.clear()
        span.end()


def _operation(ctx: CallContext) -> str:
    return "embeddings" if ctx.endpoint == "embeddings" else "chat"


def _provider_name(dep: Deployment) -> str:
    kind = getattr(dep.provider, "type", "")
    return _GEN_AI_PROVIDER.get(kind, kind or dep.provider_name)


def _address(dep: Deployment) -> tuple[str, int] | None:
    """The upstream's host and port, from the provider's configured base URL (if it has one)."""
    url = getattr(dep.provider.config, "base_url", None)
    if not isinstance(url, str):
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return (parts.hostname, port) if parts.hostname else None


def _error_type(status: int | None, word: str) -> str:
    """error.type: a status word or code, never an error's text (an upstream's may quote the prompt)."""
    return str(status) if status is not None and status >= 400 else word


def _scan(chunk: Any, reasons: list[str]) -> None:
    for ev in chunk.events:
        if type(ev) is Finish:
            reasons.append(str(ev.reason))


async def _follow(rest: AsyncIterator[Any], reasons: list[str]) -> AsyncIterator[Any]:
    """A traced stream's chunks, as they come, noting its finish reasons."""
    try:
        async for chunk in rest:
            _scan(chunk, reasons)
            yield chunk
    finally:
        aclose: Callable[[], Any] | None = getattr(rest, "aclose", None)
        if aclose is not None:
            await aclose()
