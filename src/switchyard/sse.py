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
        buf = self._buf + chunk if self._buf else chunk
        if self._data or self._event is not None or b"\r" in buf:
            self._buf = buf
            return self._feed_lines()
        # The usual stream: events end with a blank line "\n\n" (no CR), most of them one "data: ..." line. Split
        # on the blank lines and keep the unfinished event for the next read.
        blocks = buf.split(b"\n\n")
        self._buf = blocks.pop()
        out: list[SSEvent] = []
        for block in blocks:
            if block.startswith(b"data: ") and b"\n" not in block:
                out.append(SSEvent(None, block[6:].decode("utf-8")))
            elif block:
                self._line_block(block, out)
        return out

    def _line_block(self, block: bytes, out: list[SSEvent]) -> None:
        """One complete event of several lines (or of comments only), by the general rules."""
        for line in block.split(b"\n"):
            self._line(line)
        if self._data:
            out.append(SSEvent(self._event, "\n".join(self._data)))
        self._event, self._data = None, []

    def _line(self, line: bytes) -> None:
        text = line.decode("utf-8")
        if text.startswith(":"):
            return
        name, _, value = text.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value

    def _feed_lines(self) -> list[SSEvent]:
        """Line by line, for CR line ends and an event split across reads."""
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
            self._line(line)
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
