"""The lean HTTP/1.1 client (providers/http1.py) against a raw socket server that answers exactly as scripted:
framing (Content-Length, chunked, end of connection), compression, keep-alive reuse, streamed replies, and every
transport failure named as the providers expect. (The providers' own tests and the chaos tests run it against the
fakes too.)"""

from __future__ import annotations

import asyncio
import gzip
import socket
import struct
from collections.abc import AsyncIterator, Callable

import pytest

from switchyard.providers.http1 import ConnectFailed, ConnectionReset, Disconnected, LeanHTTP, ReadTimeout
from switchyard.providers.http_provider import transport_error

Script = Callable[[bytes], bytes | None]  # request head -> raw reply (None: close without a word)


class RawServer:
    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[bytes] = []
        self.script: Script = lambda head: b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        self.after: str = "keep"  # keep | close | reset | hang
        self.server: asyncio.base_events.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                if self.after == "hang":
                    await asyncio.sleep(2)
                reply = self.script(head)
                if reply:
                    writer.write(reply)
                    await writer.drain()
                if self.after == "reset":
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                if self.after == "close" or reply is None:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1/chat/completions"


@pytest.fixture
async def raw() -> AsyncIterator[RawServer]:
    s = RawServer()
    s.server = await asyncio.start_server(s.handle, "127.0.0.1", 0)
    yield s
    s.server.close()


def client(total: float = 5.0) -> LeanHTTP:
    return LeanHTTP(limit=4, connect_timeout=2.0, total_timeout=total)


async def test_keep_alive_reuses_one_connection_and_sends_what_it_was_given(raw: RawServer) -> None:
    c = client()
    for _ in range(3):
        status, headers, body = await c.request("POST", raw.url + "?api-version=1", {"authorization": "Bearer k",
                                                "X-Extra": "v"}, b'{"a":1}')
        assert (status, body, headers["Content-Length"]) == (200, b"ok", "2")
    assert raw.connections == 1 and len(raw.requests) == 3
    head = raw.requests[0].decode()
    assert head.startswith("POST /v1/chat/completions?api-version=1 HTTP/1.1\r\n")
    assert f"host: 127.0.0.1:{raw.url.split(':')[2].split('/')[0]}\r\n" in head
    assert "authorization: Bearer k\r\n" in head and "X-Extra: v\r\n" in head and "content-length: 7\r\n" in head
    assert head.endswith('\r\n\r\n{"a":1}')
    await c.aclose()


async def test_chunked_gzip_and_end_of_connection_bodies(raw: RawServer) -> None:
    packed = gzip.compress(b'{"choices": []}')
    half = len(packed) // 2
    raw.script = lambda head: (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-encoding: gzip\r\n\r\n"
                               + f"{half:x}\r\n".encode() + packed[:half] + b"\r\n"
                               + f"{len(packed) - half:x}\r\n".encode() + packed[half:] + b"\r\n0\r\n\r\n")
    c = client()
    assert (await c.request("POST", raw.url, {}, b"{}"))[2] == b'{"choices": []}'
    raw.script = lambda head: b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nto the end"
    raw.after = "close"
    status, _, body = await c.request("POST", raw.url, {}, b"{}")
    assert (status, body) == (200, b"to the end")
    await c.aclose()


async def test_transport_failures_are_named(raw: RawServer) -> None:
    c = client(total=0.5)
    raw.script = lambda head: b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\ncut short"
    raw.after = "close"
    with pytest.raises(Disconnected) as cut:
        await c.request("POST", raw.url, {}, b"{}")
    assert "closed the connection unexpectedly" in transport_error(cut.value, "up", "d").message
    raw.script = lambda head: b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial"
    raw.after = "reset"
    with pytest.raises((ConnectionReset, Disconnected)) as reset:
        await c.request("POST", raw.url, {}, b"{}")
    assert transport_error(reset.value, "up", "d").retryable
    raw.script = lambda head: b"NOT HTTP AT ALL\r\n\r\n"
    raw.after = "keep"
    with pytest.raises(Disconnected, match="malformed"):
        await c.request("POST", raw.url, {}, b"{}")
    raw.after = "hang"
    with pytest.raises(TimeoutError) as slow:
        await c.request("POST", raw.url, {}, b"{}")
    assert transport_error(slow.value, "up", "d").message == "timed out waiting for provider 'up'"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(ConnectFailed) as refused:
            await c.request("POST", f"http://127.0.0.1:{port}/v1/x", {}, b"{}")
    assert transport_error(refused.value, "up", "d").message == "could not connect to provider 'up'"
    with pytest.raises(ValueError, match="newline"):
        await c.request("POST", raw.url, {"x-injected": "a\r\nevil: 1"}, b"{}")
    await c.aclose()


async def test_the_total_timeout_bounds_the_wait_for_a_slot_and_frees_it(raw: RawServer) -> None:
    c = LeanHTTP(limit=1, connect_timeout=2.0, total_timeout=0.5)
    raw.after = "hang"  # the server answers after 2 s: the first call holds the only slot until its timeout
    first, second = await asyncio.gather(c.request("POST", raw.url, {}, b"{}"), c.request("POST", raw.url, {}, b"{}"),
                                         return_exceptions=True)
    assert isinstance(first, TimeoutError) and isinstance(second, TimeoutError)
    # the second waits for the slot until its own deadline; when the first's timeout frees the slot in the same
    # instant, the second may take it and time out waiting for the reply instead: bounded either way
    assert ("no free connection" in str(second) or "no complete reply" in str(second)) \
        and transport_error(second, "up", "d").status == 504
    raw.after = "keep"
    assert (await c.request("POST", raw.url, {}, b"{}")).status == 200  # the slot was given back both times
    await c.aclose()


async def test_a_percent_encoded_path_goes_out_exactly_as_given(raw: RawServer) -> None:
    c = client()
    url = raw.url.replace("/v1/chat/completions", "/model/arn%3Aaws%3Ax%2Fy/converse?q=a%20b")
    assert (await c.request("POST", url, {}, b"{}")).status == 200
    assert raw.requests[-1].startswith(b"POST /model/arn%3Aaws%3Ax%2Fy/converse?q=a%20b HTTP/1.1\r\n")
    await c.aclose()


class Dripper:
    """Answers each request with a chunked stream, one scripted part at a time (``(pause_s, payload)``; a payload
    of None resets the connection, ``b""`` ends the stream properly), and counts connections."""

    def __init__(self, parts: list[tuple[float, bytes | None]], encoding: str | None = None) -> None:
        self.parts = parts
        self.encoding = encoding
        self.connections = 0
        self.sent: list[float] = []  # loop time at which each payload went out

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        loop = asyncio.get_running_loop()
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                extra = f"content-encoding: {self.encoding}\r\n" if self.encoding else ""
                writer.write(("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                              f"transfer-encoding: chunked\r\n{extra}\r\n").encode())
                for pause, payload in self.parts:
                    await asyncio.sleep(pause)
                    if payload is None:
                        sock = writer.get_extra_info("socket")
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        writer.transport.abort()
                        return
                    writer.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n" if payload else b"0\r\n\r\n")
                    await writer.drain()
                    self.sent.append(loop.time())
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


async def serve(d: Dripper) -> tuple[asyncio.base_events.Server, str]:
    server = await asyncio.start_server(d.handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/chat/completions"


async def test_a_stream_arrives_chunk_by_chunk_and_its_connection_is_reused() -> None:
    d = Dripper([(0, b"data: 1\n\n"), (0.3, b"data: 2\n\n"), (0, b"")])
    server, url = await serve(d)
    c = client()
    loop = asyncio.get_running_loop()
    for _ in range(2):
        got: list[tuple[float, bytes]] = []
        async with await c.stream("POST", url + "?alt=sse", {}, b"{}") as s:
            assert (s.status, s.headers["Content-Type"]) == (200, "text/event-stream")
            async for data in s:
                got.append((loop.time(), data))
        assert b"".join(x for _, x in got) == b"data: 1\n\ndata: 2\n\n"
        assert got[0][1] == b"data: 1\n\n" and got[0][0] < d.sent[-2]  # the first before the second was sent
    assert d.connections == 1
    await c.aclose()
    server.close()


async def test_the_read_timeout_bounds_each_wait_not_the_whole_stream() -> None:
    # six parts 0.3 s apart: 1.8 s in all, longer than the 1.5 s timeout, whose one timer moves with each wait
    d = Dripper([(0, b"data: 0\n\n"), *[(0.3, f"data: {i}\n\n".encode()) for i in range(1, 6)], (0, b"")])
    server, url = await serve(d)
    c = LeanHTTP(limit=4, connect_timeout=2.0, total_timeout=1.5)
    async with await c.stream("POST", url, {}, b"{}") as s:
        assert (await s.read()).count(b"data:") == 6
    assert d.sent[-1] - d.sent[0] > 1.5
    await c.aclose()
    server.close()


async def test_a_gzip_stream_is_decoded_as_it_arrives() -> None:
    packed = gzip.compress(b"data: " + b"x" * 5000 + b"\n\n")
    d = Dripper([(0, packed[:40]), (0.05, packed[40:]), (0, b"")], encoding="gzip")
    server, url = await serve(d)
    c = client()
    async with await c.stream("POST", url, {}, b"{}") as s:
        assert await s.read() == b"data: " + b"x" * 5000 + b"\n\n"
    await c.aclose()
    server.close()


async def test_stream_failures_are_named_and_a_stream_left_early_is_not_reused() -> None:
    d = Dripper([(0, b"data: 1\n\n"), (1.0, b"data: 2\n\n"), (0, b"")])
    server, url = await serve(d)
    c = LeanHTTP(limit=4, connect_timeout=2.0, total_timeout=0.3)  # per read, for a stream
    with pytest.raises(ReadTimeout) as stalled:
        async with await c.stream("POST", url, {}, b"{}") as s:
            async for _ in s:
                pass
    assert transport_error(stalled.value, "up", "d").message == "timed out waiting for provider 'up'"
    async with await c.stream("POST", url, {}, b"{}") as s:
        async for _ in s:
            break  # the consumer stops early: the connection cannot go back to the pool
    d.parts = [(0, b"data: 1\n\n"), (0.05, None)]
    with pytest.raises((ConnectionReset, Disconnected)) as reset:
        async with await c.stream("POST", url, {}, b"{}") as s:
            async for _ in s:
                pass
    assert transport_error(reset.value, "up", "d").retryable
    assert d.connections == 3
    await c.aclose()
    server.close()
