"""A tiny HTTP tool server for workflow tests: counts calls per path, can stall or fail, and redirects."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .servers import serve_asgi


class ToolServer:
    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self.bodies: list[Any] = []
        self.stall: dict[str, float] = {}  # path -> seconds to wait before answering
        self.fail: dict[str, int] = {}  # path -> status to answer, how many times: fail_times
        self.fail_times: dict[str, int] = {}
        self.redirect_to: str | None = None
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET", "POST"])])

    async def _handle(self, request: Request) -> Response:
        path = "/" + request.path_params["path"]
        self.calls[path] += 1
        body = await request.body()
        self.bodies.append(body)
        if path == "/redirect" and self.redirect_to:
            return RedirectResponse(self.redirect_to, status_code=307)
        if self.stall.get(path):
            await asyncio.sleep(self.stall[path])
        if self.fail_times.get(path, 0) > 0:
            self.fail_times[path] -= 1
            return JSONResponse({"error": "scripted"}, status_code=self.fail.get(path, 503))
        import orjson

        data = orjson.loads(body) if body else {}
        return JSONResponse({"path": path, "echo": data, "n": self.calls[path]})

    @contextlib.contextmanager
    def serve(self, port: int | None = None) -> Iterator[str]:
        kwargs = {"port": port} if port else {}
        with serve_asgi(self.app, **kwargs) as url:
            yield url
