"""Server-sent events: a small incremental decoder (for upstream streams) and an encoder (for clients).

Both sides of the gateway use it, so it lives beside ``messages``: it imports nothing of the package.
Format: https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SSEvent:
    event: str | None
    data: str


class SSEDecoder:
    """Feed it bytes as they arrive; it returns the complete events so far."""

    __slots__ = ("_buf", "_data", "_event")

    def __init__(self) -> None:
        self._buf = b""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SSEvent]:
        self._buf += chunk
        out: list[SSEvent] = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                break
            line = self._buf[:nl]
            self._buf = self._buf[nl + 1 :]
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    out.append(SSEvent(self._event, "\n".join(self._data)))
                self._event, self._data = None, []
                continue
            text = line.decode("utf-8")
            if text.startswith(":"):
                continue
            name, _, value = text.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data":
                self._data.append(value)
            elif name == "event":
                self._event = value
        return out

    def flush(self) -> list[SSEvent]:
        """Events left when the stream ends; a final event without its blank line still counts."""
        out = self.feed(b"\n\n") if self._buf or self._data else []
        return out


def encode(data: bytes, event: str | None = None) -> bytes:
    """One SSE frame. ``data`` must not contain newlines (compact JSON never does)."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
