"""The stream relay's parts, in isolation: the SSE decoder (against a line-by-line reading of the spec), the
write coalescing of ``StreamResponse`` (frames that are ready together leave in one write; a waiting producer
never holds back what it already made), and ``StreamLease``'s one timer per stream (idle gaps and the deadline)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import pytest

from switchyard.config.routing import BreakerConfig
from switchyard.errors import UpstreamTimeout
from switchyard.messages import Chunk
from switchyard.routing.executor import Attempt, StreamLease
from switchyard.routing.health import Health
from switchyard.server.asgi import StreamResponse, next_or_flush
from switchyard.sse import SSEDecoder


class SpecDecoder:
    """The event-stream parsing algorithm of the HTML standard (section 9.2.6), line by line, as a reference."""

    def __init__(self) -> None:
        self.buf, self.event, self.data = b"", None, []  # type: ignore[var-annotated]

    def feed(self, chunk: bytes) -> list[tuple[str | None, str]]:
        self.buf += chunk
        out = []
        while (nl := self.buf.find(b"\n")) >= 0:
            line, self.buf = self.buf[:nl].removesuffix(b"\r"), self.buf[nl + 1:]
            if not line:
                if self.data:
                    out.append((self.event, "\n".join(self.data)))
                self.event, self.data = None, []
                continue
            text = line.decode()
            if text.startswith(":"):
                continue
            name, _, value = text.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                self.data.append(value)
            elif name == "event":
                self.event = value
        return out

    def flush(self) -> list[tuple[str | None, str]]:
        return self.feed(b"\n\n") if self.buf or self.data else []


PIECES = [b'data: {"a":1}\n\n', b"event: ping\ndata: x\n\n", b": keep-alive\n\n", b"data: a\ndata: b\n\n",
          b"data:\n\n", b"event: e\r\ndata: y\r\n\r\n",
          b"data: z\n\n\n", b"id: 3\ndata: q\n\n", b"retry: 5\n\n", b"data: \xc3\xa9t\xc3\xa9\n\n",
          b"data: last"]


def test_the_decoder_reads_any_split_of_a_stream_as_the_spec_does() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        stream = b"".join(rng.choice(PIECES) for _ in range(rng.randint(1, 12)))
        cuts = sorted(rng.sample(range(len(stream) + 1), min(len(stream) + 1, rng.randint(0, 8))))
        parts = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        ours, spec = SSEDecoder(), SpecDecoder()
        got = [(e.event, e.data) for p in parts for e in ours.feed(p)] + [(e.event, e.data) for e in ours.flush()]
        want = [ev for p in parts for ev in spec.feed(p)] + spec.flush()
        assert got == want, (stream, parts)


async def _frames(items: list[bytes | float]) -> AsyncIterator[bytes]:
    """Frames, with a pause (a float: seconds) where the producer would wait for its upstream."""
    for item in items:
        if isinstance(item, float):
            await asyncio.sleep(item)
        else:
            yield item


async def _respond(items: list[bytes | float]) -> list[dict[str, object]]:
    sent: list[dict[str, object]] = []
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def receive() -> dict[str, object]:
        await never
        raise AssertionError

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await StreamResponse(_frames(items), {})({"type": "http"}, receive, send)  # type: ignore[arg-type]
    return sent


async def test_frames_that_are_ready_together_leave_in_one_write_with_the_end_of_the_body() -> None:
    sent = await _respond([b"a", b"b", b"c"])
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[1] == {"type": "http.response.body", "body": b"abc", "more_body": False}


async def test_a_waiting_producer_first_writes_what_it_made() -> None:
    sent = await _respond([b"a", b"b", 0.01, b"c", 0.01, b"d"])
    bodies = [(m["body"], m["more_body"]) for m in sent[1:]]
    assert bodies == [(b"ab", True), (b"c", True), (b"d", False)]


async def test_a_cancellation_while_writing_reaches_the_producer() -> None:
    seen: list[str] = []

    async def producer() -> bytes:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("producer cancelled")
            raise
        return b""

    async def slow_flush() -> None:
        await asyncio.sleep(10)

    task = asyncio.ensure_future(next_or_flush(producer(), slow_flush))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["producer cancelled"]


def _lease(idle: float | None, deadline: float | None) -> StreamLease:
    health = Health("d", "chat", BreakerConfig())
    return StreamLease(health, health.acquire(time.monotonic()), Attempt("d", provider="p"), deadline, idle)


async def _drip(gaps: list[float]) -> AsyncIterator[Chunk]:
    for gap in gaps:
        await asyncio.sleep(gap)
        yield Chunk([])


async def _read_all(lease: StreamLease, rest: AsyncIterator[Chunk]) -> int:
    n = 0
    try:
        while True:
            await lease.next(rest)
            n += 1
    except StopAsyncIteration:
        return n
    finally:
        lease.finish(lease.outcome_of(UpstreamTimeout("x", provider="p")))


async def test_gaps_within_the_idle_limit_pass_and_a_longer_gap_fails_the_stream() -> None:
    assert await _read_all(_lease(0.3, None), _drip([0.03] * 15)) == 15  # 0.45 s in all, no gap near 0.3 s
    with pytest.raises(UpstreamTimeout, match=r"sent nothing for 0\.3s"):
        await _read_all(_lease(0.3, None), _drip([0.03, 0.03, 1.5]))


async def test_the_deadline_ends_a_stream_that_never_pauses_long() -> None:
    with pytest.raises(UpstreamTimeout, match="deadline passed mid-stream"):
        await _read_all(_lease(0.3, time.monotonic() + 0.4), _drip([0.03] * 60))


async def test_a_deadline_brought_forward_takes_effect_on_the_next_wait() -> None:
    lease = _lease(5.0, None)
    rest = _drip([0.0, 2.0])
    await lease.next(rest)
    lease.deadline = time.monotonic() + 0.1  # as a drain does
    with pytest.raises(UpstreamTimeout, match="deadline"):
        await lease.next(rest)


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    lease = _lease(0.5, None)
    task = asyncio.ensure_future(lease.next(_drip([10.0])))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
