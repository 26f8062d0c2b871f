"""Structured logs: one line per finished call on the ``switchyard.request`` logger, at ``info``, and the events an
operator must see (upstream failures, breaker changes) on ``switchyard.telemetry``.

A request line holds ids, names from the configuration, numbers and the gateway's own status words: never a prompt,
a completion, a key or an upstream's error text (which may echo the prompt). ``server.log_format`` chooses text
(``key=value`` pairs) or JSON (one object a line) for every logger; ``--log-level warning`` turns request lines off,
and then they cost one level check.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from ..records import CallRecord
    from ..routing.health import Health
    from ..stages import CallContext

request_log = logging.getLogger("switchyard.request")
events = logging.getLogger("switchyard.telemetry")

_BREAKER_LEVEL = {"open": logging.WARNING, "half_open": logging.INFO, "closed": logging.INFO}


class Fields:
    """A log message made of fields: rendered as ``key=value`` pairs by a text formatter, merged into the object
    by :class:`JsonFormatter`. Rendering happens only if a handler formats the line."""

    __slots__ = ("fields", "head")

    def __init__(self, head: str, fields: dict[str, Any]) -> None:
        self.head = head
        self.fields = fields

    def __str__(self) -> str:
        return self.head + "".join(f" {k}={v}" for k, v in self.fields.items() if v is not None)


def request_fields(ctx: CallContext, rec: CallRecord) -> dict[str, Any]:
    p = rec.principal
    u = rec.usage
    return {
        "request_id": rec.request_id,
        "client_request_id": _clip(rec.client_request_id),
        "principal": rec.principal_id,
        "key_id": p.key_id if p is not None else None,
        "user_id": p.user_id if p is not None else None,
        "team_id": p.team_id if p is not None else None,
        "org_id": p.org_id if p is not None else None,
        "protocol": ctx.protocol,
        "endpoint": rec.endpoint,
        "route": rec.route,
        "deployment": rec.deployment,
        "attempts": rec.attempts,
        "status": rec.status,
        "http_status": rec.http_status,
        "latency_ms": round(rec.latency_ms, 2),
        "ttft_ms": round(rec.ttft_ms, 2) if rec.ttft_ms is not None else None,
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cost_usd": round(rec.total_cost, 8),
    }


def _clip(v: str | None) -> str | None:
    """The caller's own request id, kept short and printable (it is the caller's text, but an id it chose)."""
    if v is None:
        return None
    return "".join(ch for ch in v[:64] if ch.isprintable() and ch not in " =\"")


class RequestLog:
    def observe(self, ctx: CallContext, rec: CallRecord) -> None:
        if rec.attempts:
            for a in ctx.attempts:
                if a.outcome in ("error", "broken") and (a.status is None or a.status >= 500 or a.status in (401, 403,
                                                                                                             429)):
                    events.warning(Fields("upstream failure", {"request_id": rec.request_id, "deployment":
                                                               a.deployment, "provider": a.provider,
                                                               "status": a.status, "outcome": a.outcome}))
        if request_log.isEnabledFor(logging.INFO):
            # made and handled directly: ``info()`` would also walk the stack for a caller that nobody prints
            line = request_log.makeRecord(request_log.name, logging.INFO, __file__, 0,
                                          Fields("request", request_fields(ctx, rec)), (), None)
            request_log.handle(line)


def breaker_changed(h: Health, state: str) -> None:
    events.log(_BREAKER_LEVEL.get(state, logging.INFO),
               Fields("breaker", {"deployment": h.deployment, "endpoint": h.endpoint, "state": state}))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and the fields of a :class:`Fields` message."""

    _second = -1
    _stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.msg
        second = int(record.created)
        if second != self._second:  # the date part, once a second
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        out: dict[str, Any] = {
            "ts": f"{self._stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if isinstance(msg, Fields):
            out["msg"] = msg.head
            out.update(msg.fields)  # every field on every line, null when it has no value
        else:
            out["msg"] = record.getMessage()
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str, fmt: str) -> None:
    """The process's logging: ``level`` (debug | info | warning | error) and ``fmt`` (text | json), on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # no line prints them, and each costs a lookup per record
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
