"""A webhook receiver for tests: a threaded HTTP server on 127.0.0.1 that records every POST it gets (path,
headers, body) and answers with a fixed status (and optionally a ``Location``), over TLS when given a context, in
which case it also records the SNI name each handshake carried."""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Receiver:
    port: int
    requests: list[Received] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)


@contextlib.contextmanager
def receiver(tls: ssl.SSLContext | None = None, answer: int = 204, location: str | None = None) -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            rec.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(answer)
            if location:
                self.send_header("location", location)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec = Receiver(server.server_address[1])
    if tls is not None:
        tls.sni_callback = lambda sock, name, ctx: rec.sni.append(name)  # type: ignore[assignment,misc,return-value]
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
