"""Decoding AWS event streams (``application/vnd.amazon.eventstream``), incrementally, with botocore's own parser.

A frame is a prelude (total length, headers length, CRC32 of the two), typed headers (``:message-type``,
``:event-type``, ``:exception-type``, ``:content-type``...), a payload, and a CRC32 of all that precedes it.
botocore's ``EventStreamBuffer`` checks both checksums and the length limits; this module gives it a typed face
and names its failures. botocore is imported when a decoder is made, so the gateway's core runs without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class FrameError(Exception):
    """A frame that fails its checksum or breaks the format."""


@dataclass(frozen=True, slots=True)
class Frame:
    headers: dict[str, Any]  # str, bytes, int, bool, or a timestamp: the event-stream header value types
    payload: bytes

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value if isinstance(value, str) else None

    @property
    def message_type(self) -> str:
        """``event``, ``exception`` (a modelled error), or ``error`` (an unmodelled one)."""
        return self.header(":message-type") or "event"

    @property
    def event_type(self) -> str | None:
        return self.header(":event-type")

    @property
    def exception_type(self) -> str | None:
        return self.header(":exception-type")


class EventStreamDecoder:
    """Feed it bytes as they arrive; it returns the frames they complete."""

    __slots__ = ("_buffer", "_parser_error")

    def __init__(self) -> None:
        from botocore.eventstream import (  # type: ignore[import-untyped, unused-ignore]
            EventStreamBuffer,
            ParserError,
        )

        self._buffer: Any = EventStreamBuffer()
        self._parser_error: type[Exception] = ParserError

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer.add_data(data)
        try:
            return [Frame(dict(m.headers), bytes(m.payload)) for m in self._buffer]
        except self._parser_error as e:
            raise FrameError(f"{type(e).__name__}: {e}") from e
