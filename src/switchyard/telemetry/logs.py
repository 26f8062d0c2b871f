"""Structured logs: one line per finished call on the ``switchyard.request`` logger, at ``info``, and the events an
operator must see (upstream failures, breaker changes) on ``switchyard.telemetry``.

A request line holds ids, names from the configuration, numbers and the gateway's own status words: never a prompt,
a completion, a key or an upstream's error text (which may echo the prompt). ``server.log_format`` chooses text
(``key=value`` pairs) or JSON (one object a line) for every logger; ``--log-level warning`` turns request lines off,
and then they cost one level check.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import sys
import threading
import time
from queue import Empty, SimpleQueue
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


def refused(ctx: CallContext, status: int, code: str | None) -> None:
    """The request line of a caller refused at admission: its ids and the refusal, never the key it sent."""
    if request_log.isEnabledFor(logging.INFO):
        request_log.info(Fields("request", {"request_id": ctx.request_id,
                                            "client_request_id": _clip(ctx.client_request_id),
                                            "protocol": ctx.protocol, "endpoint": ctx.endpoint, "status": "refused",
                                            "http_status": status, "error_code": code}))


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


class _Enqueue(logging.Handler):
    """Hands records to the :class:`LogWriter` thread: formatting and writing happen there, off the event loop."""

    def __init__(self, queue: SimpleQueue[logging.LogRecord | None]) -> None:
        super().__init__()
        self.queue = queue

    def handle(self, record: logging.LogRecord) -> bool:  # no handler lock: the queue is thread-safe
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        if record.args:  # the arguments as they are now, not as they may be when the line is written
            record.msg, record.args = record.getMessage(), None
        self.queue.put(record)


class LogWriter(threading.Thread):
    """Writes what :class:`_Enqueue` queued, in batches: every record waiting is formatted and goes out in one
    write. Stopped (after writing all that waits) at exit, so that no line is lost on a clean shutdown.

    Once a record arrives, the thread waits ``linger`` seconds for more before it writes: at a low request rate a
    thread woken for every line costs each request a thread switch and a write (about a tenth of a millisecond of
    CPU at 100 req/s); with the linger it wakes at most ``1 / linger`` times a second, whatever the rate. A line
    reaches the log at most ``linger`` late."""

    def __init__(self, handler: logging.Handler, linger: float = 0.05) -> None:
        super().__init__(name="switchyard-log-writer", daemon=True)
        self.handler = handler
        self.linger = linger
        self.queue: SimpleQueue[logging.LogRecord | None] = SimpleQueue()

    def run(self) -> None:
        fmt, stream = self.handler.format, getattr(self.handler, "stream", sys.stderr)
        get, get_nowait = self.queue.get, self.queue.get_nowait
        while True:
            batch = [get()]
            if batch[0] is not None and self.linger:
                time.sleep(self.linger)
            with contextlib.suppress(Empty):
                while len(batch) < 2048:
                    batch.append(get_nowait())
            lines = []
            for rec in batch:
                if rec is None:
                    continue
                try:
                    lines.append(fmt(rec))
                except Exception:  # a bad record loses its own line, never the others
                    self.handler.handleError(rec)
            if lines:
                try:
                    stream.write("\n".join(lines) + "\n")
                    stream.flush()
                except (OSError, ValueError):  # stderr closed
                    pass
            if None in batch:
                return

    def stop(self, timeout: float = 5.0) -> None:
        if self.is_alive():
            self.queue.put(None)
            self.join(timeout)


_writer: list[LogWriter] = []


def configure(level: str, fmt: str) -> None:
    """The process's logging: ``level`` (debug | info | warning | error) and ``fmt`` (text | json), on stderr,
    written by a :class:`LogWriter` thread (a log line costs the event loop a queue put, not a write)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    for old in _writer:
        old.stop()
    _writer.clear()
    writer = LogWriter(handler)
    writer.start()
    _writer.append(writer)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(_Enqueue(writer.queue))
    root.setLevel(level.upper())
    # no line prints them, and each costs a lookup per record
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False


@atexit.register
def _flush_at_exit() -> None:
    for w in _writer:
        w.stop()
