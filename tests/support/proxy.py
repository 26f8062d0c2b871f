"""A small HTTP forward proxy for tests, on its own event loop in a thread.

It speaks what corporate proxies speak (RFC 9110 section 9.3.6, CONNECT; RFC 9112 section 3.2.2, absolute-form
requests; RFC 9110 section 11.7, ``Proxy-Authorization``/``Proxy-Authenticate`` with the Basic scheme of RFC 7617):

* ``CONNECT host:port``: answers ``200 Connection established`` and relays bytes both ways, blind (TLS to the
  origin runs inside the tunnel, end to end);
* ``POST http://host:port/path`` (absolute form): forwards the request to the origin in origin form, without the
  proxy's own headers and with ``connection: close``, and relays the reply; one request per client connection;
* with ``credentials`` set, a request without the right ``Proxy-Authorization: Basic`` is answered
  ``407 Proxy Authentication Required`` with ``Proxy-Authenticate: Basic realm="test"``.

It counts what it did (``tunnels``, ``forwarded``, ``refused``) and keeps the targets it was asked for.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit


class ForwardProxy:
    def __init__(self, credentials: tuple[str, str] | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.credentials = credentials
        self.tls = tls  # a server context: clients speak TLS to the proxy itself (an https:// proxy URL)
        self.tunnels = 0
        self.forwarded = 0
        self.refused = 0
        self.targets: list[str] = []  # "CONNECT host:port" or "POST http://host:port/path"
        self.url = ""  # http://127.0.0.1:PORT while serving
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()

    def url_with(self, user: str, password: str, host: str = "127.0.0.1") -> str:
        return f"{'https' if self.tls else 'http'}://{user}:{password}@{host}:{self.port}"

    # --- serving ---------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        server: list[asyncio.base_events.Server] = []

        async def start() -> None:
            srv = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls)
            server.append(srv)
            self.port = srv.sockets[0].getsockname()[1]
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(start())
            loop.run_forever()

        thread = threading.Thread(target=run, name="forward-proxy", daemon=True)
        thread.start()
        ready.wait(10)
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"
        try:
            yield self.url
        finally:
            async def stop() -> None:
                server[0].close()
                for w in list(self._writers):  # the relays see their connections end, and return
                    w.close()
                tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                _, stragglers = await asyncio.wait(tasks, timeout=5) if tasks else (set(), set())
                for task in stragglers:
                    task.cancel()

            asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()

    # --- one client connection ---------------------------------------------------------------------------

    def _authorized(self, headers: dict[str, str]) -> bool:
        if self.credentials is None:
            return True
        expected = base64.b64encode(":".join(self.credentials).encode()).decode()
        return headers.get("proxy-authorization", "") == f"Basic {expected}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line, *rest = head.decode("latin-1").split("\r\n")
            method, target, _ = line.split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in rest if h)}
            self.targets.append(f"{method} {target}")
            if not self._authorized(headers):
                self.refused += 1
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nproxy-authenticate: Basic realm=\"test\""
                             b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                await writer.drain()
                return
            if method == "CONNECT":
                await self._tunnel(target, reader, writer)
            else:
                await self._forward(method, target, headers, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _tunnel(self, authority: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, _, port = authority.rpartition(":")
        try:
            up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
            return
        self._writers.add(up_writer)
        self.tunnels += 1
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await _relay(reader, writer, up_reader, up_writer)

    async def _forward(self, method: str, target: str, headers: dict[str, str], reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        u = urlsplit(target)
        if u.scheme != "http" or not u.hostname:
            writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
            return
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        up_reader, up_writer = await asyncio.open_connection(u.hostname, u.port or 80)
        self._writers.add(up_writer)
        self.forwarded += 1
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        kept = {k: v for k, v in headers.items() if k not in ("proxy-authorization", "proxy-connection", "connection")}
        lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in kept.items()), "connection: close"]
        up_writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await up_writer.drain()
        await _relay(reader, writer, up_reader, up_writer)


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up_reader: asyncio.StreamReader,
                 up_writer: asyncio.StreamWriter) -> None:
    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except ConnectionError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.close()

    try:
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
    finally:
        up_writer.close()
