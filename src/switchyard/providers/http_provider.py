"""What every HTTP provider shares: its transport, the JSON and server-sent-event exchanges, and the one mapping of
transport failures and error replies onto the gateway's errors.

A provider module renders its wire format and parses the replies; :class:`HTTPProvider` does the rest. Its
transport (:mod:`.transport`) is built from the provider's config, or handed in (a ``MockTransport`` in unit tests).
The mapping: an upstream 429 stays a 429 with its ``Retry-After``; a 5xx, a failed or broken connection, or a proxy
that refuses the tunnel becomes a 502; a timeout a 504; an error the upstream blames on the request keeps its 4xx.
Every such error names the provider and the deployment.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import Any

import orjson

from ..errors import UpstreamError, UpstreamTimeout, is_retryable_status, parse_retry_after
from ..sse import SSEDecoder, SSEvent
from ..telemetry.traceparent import UPSTREAM
from .base import Provider, Target
from .http import lean_transport
from .transport import (
    TRANSPORT_ERRORS,
    ConnectFailed,
    ConnectionReset,
    ConnectTimeout,
    Disconnected,
    ProxyError,
    Response,
    StreamResponse,
    Transport,
)


def transport_error(exc: BaseException, provider: str, deployment: str) -> UpstreamError:
    """A transport failure, named. Messages reach the caller: they never quote a host, a proxy or a credential."""
    if isinstance(exc, TimeoutError):  # a connect timeout, a read timeout, or the total
        kind = "connecting to" if isinstance(exc, ConnectTimeout) else "waiting for"
        return UpstreamTimeout(f"timed out {kind} provider {provider!r}", provider=provider, deployment=deployment)
    if isinstance(exc, ProxyError):
        if exc.status == 407:
            msg = (f"could not reach provider {provider!r}: its proxy refused the gateway's credentials "
                   "(HTTP 407 Proxy Authentication Required)")
        elif exc.status is not None:
            msg = f"could not reach provider {provider!r}: its proxy refused the connection (HTTP {exc.status})"
        else:
            msg = f"could not reach provider {provider!r}: its proxy could not be reached"
    elif isinstance(exc, ConnectFailed):
        msg = f"could not connect to provider {provider!r}"
    elif isinstance(exc, ConnectionReset):
        msg = f"the connection to provider {provider!r} was reset"
    elif isinstance(exc, Disconnected):
        msg = f"provider {provider!r} closed the connection unexpectedly"
    else:
        msg = f"provider {provider!r} failed: {exc}"
    return UpstreamError(msg, provider=provider, deployment=deployment, retryable=True)


def status_error(status: int, headers: Mapping[str, str], body: bytes, provider: str,
                 deployment: str) -> UpstreamError:
    """An upstream error reply, named. The upstream's own message is kept (it never holds our secrets)."""
    detail = ""
    upstream_type: str | None = None
    param: str | None = None
    code: str | None = None
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            detail = str(err.get("message") or "")
            upstream_type = err.get("type") if isinstance(err.get("type"), str) else None
            if upstream_type is None and isinstance(err.get("status"), str):  # Google: RESOURCE_EXHAUSTED, ...
                upstream_type = err["status"]
            param = err.get("param") if isinstance(err.get("param"), str) else None
            code = err.get("code") if isinstance(err.get("code"), str) else None
        elif isinstance(err, str):
            detail = err
    elif isinstance(data, list) and data and isinstance(data[0], dict):  # Gemini wraps errors in a list
        err = data[0].get("error") or {}
        detail = str(err.get("message") or "") if isinstance(err, dict) else ""
    if not detail:
        detail = body[:300].decode("utf-8", "replace").strip()
    retry_after = parse_retry_after(headers.get("retry-after"))
    if retry_after is None:
        ms = parse_retry_after(headers.get("retry-after-ms"))
        retry_after = ms / 1000 if ms is not None else None
    msg = f"provider {provider!r} returned HTTP {status}" + (f": {detail}" if detail else "")
    err = UpstreamError(msg, provider=provider, deployment=deployment, upstream_status=status,
                        retryable=is_retryable_status(status), retry_after=retry_after,
                        upstream_type=upstream_type, param=param if status < 500 else None,
                        code=code if status < 500 else None)
    if status == 407:  # a proxy in front of the upstream wants credentials: never the caller's fault
        err.status, err.kind, err.param, err.code, err.retryable = 502, "upstream", None, "upstream_error", True
    return err


class HTTPProvider(Provider):
    """A provider that reaches its upstream over HTTP, through one :class:`~.transport.Transport` (the lean client,
    unless the subclass or the caller says otherwise)."""

    def __init__(self, name: str, config: Any, transport: Transport | None = None) -> None:
        super().__init__(name, config)
        self.transport: Transport = transport if transport is not None else self.make_transport()

    def make_transport(self) -> Transport:
        """The transport this provider builds from its config when none is handed in."""
        return lean_transport(self.name, self.config)

    async def aclose(self) -> None:
        await self.transport.aclose()

    # --- errors: one mapping, overridable per wire API ---------------------------------------------------------

    def transport_error(self, exc: BaseException, target: Target) -> UpstreamError:
        return transport_error(exc, self.name, target.deployment)

    def status_error(self, status: int, headers: Mapping[str, str], body: bytes, target: Target) -> UpstreamError:
        """An error reply (status >= 400) as an error; a provider whose upstream says more in its body overrides it."""
        return status_error(status, headers, body, self.name, target.deployment)

    def bad_reply(self, what: str, target: Target) -> UpstreamError:
        """A reply that breaks the wire format: ``what`` completes "provider 'x' ...". Another deployment may do."""
        return UpstreamError(f"provider {self.name!r} {what}", provider=self.name, deployment=target.deployment,
                             retryable=True)

    # --- exchanges ---------------------------------------------------------------------------------------------

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], target: Target) -> Response:
        """POST ``body``; the whole reply, whose status is below 400 (else its error is raised)."""
        try:
            resp = await self.transport.request("POST", url, _traced(headers), body)
        except TRANSPORT_ERRORS as e:
            raise self.transport_error(e, target) from e
        if resp.status >= 400:
            raise self.status_error(resp.status, resp.headers, resp.body, target)
        return resp

    def parse_json(self, body: bytes, target: Target) -> dict[str, Any]:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise self.bad_reply("sent a reply that is not JSON", target) from None
        if not isinstance(data, dict):
            raise self.bad_reply("sent an unexpected reply", target)
        return data

    async def post_json(self, url: str, body: bytes, headers: Mapping[str, str], target: Target) -> dict[str, Any]:
        """POST ``body``; the reply's JSON object."""
        resp = await self.post(url, body, headers, target)
        return self.parse_json(resp.body, target)

    async def open_stream(self, url: str, body: bytes, headers: Mapping[str, str], target: Target) -> StreamResponse:
        """POST ``body``; the reply open for reading, its status below 400 (else its error is raised). The caller
        ``aclose()``s it, and maps failures while reading with :meth:`transport_error`."""
        try:
            resp = await self.transport.stream("POST", url, _traced(headers), body)
        except TRANSPORT_ERRORS as e:
            raise self.transport_error(e, target) from e
        if resp.status >= 400:
            try:
                data = await resp.read()
            except TRANSPORT_ERRORS as e:
                raise self.transport_error(e, target) from e
            finally:
                await resp.aclose()
            raise self.status_error(resp.status, resp.headers, data, target)
        return resp

    async def stream_sse(self, url: str, body: bytes, headers: Mapping[str, str],
                         target: Target) -> AsyncGenerator[SSEvent, None]:
        """POST ``body``; the reply's server-sent events as they arrive, to the end of the body. A consumer that may
        stop early (at OpenAI's ``[DONE]``, or by raising) iterates it inside ``contextlib.aclosing``, so that the
        connection is let go of at once: back to the pool when the reply was complete, closed otherwise."""
        reads = self.stream_sse_reads(url, body, headers, target)
        async with aclosing(reads):
            async for events in reads:
                for ev in events:
                    yield ev

    async def stream_sse_reads(self, url: str, body: bytes, headers: Mapping[str, str],
                               target: Target) -> AsyncGenerator[list[SSEvent], None]:
        """As :meth:`stream_sse`, but the events of each read from the upstream together (never an empty list):
        a consumer handles a burst of events in one step, not one step each."""
        resp = await self.open_stream(url, body, headers, target)
        try:
            decoder = SSEDecoder()
            async for raw in resp:
                events = decoder.feed(raw)
                if events:
                    yield events
            events = decoder.flush()
            if events:
                yield events
        except TRANSPORT_ERRORS as e:
            raise self.transport_error(e, target) from e
        except UnicodeDecodeError:
            raise self.bad_reply("sent a stream that is not UTF-8 text", target) from None
        finally:
            await resp.aclose()


def _traced(headers: Mapping[str, str]) -> Mapping[str, str]:
    """``headers`` with the attempt's ``traceparent`` (and ``tracestate``) when the call is traced."""
    trace = UPSTREAM.get()
    return headers if trace is None else {**headers, **trace}
