"""Helpers for the scale-out tests: one ``switchyard serve --workers N``, and connections that know their worker.

With SO_REUSEPORT the kernel picks a worker per *connection*, when it is accepted; every request sent on a
kept-alive connection is answered by that same worker. So a request's worker is learned by asking ``/health/live``
(which answers the worker's pid) on the same connection, right after it, and checking that the connection was
indeed the same one (the client's local address did not change).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from .ledger import clean_env, redis_url, serve_cmd
from .servers import ManagedProcess, free_port, run_process

# Made once: an httpx client builds its own default SSL context otherwise (~80 ms of CPU each, even for plain
# HTTP), which for a burst of 200 one-connection clients would take longer than the requests themselves.
SSL = ssl.create_default_context()


def local_addr(r: httpx.Response) -> tuple[str, int]:
    """The client side (host, port) of the connection that carried ``r``."""
    host, port = r.extensions["network_stream"].get_extra_info("client_addr")
    return str(host), int(port)


def children_of(pid: int) -> set[int]:
    """The live child processes of ``pid`` (Linux /proc)."""
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            out |= {int(c) for c in (task / "children").read_text().split()}
    return out


@dataclass
class Workers:
    url: str
    process: ManagedProcess
    pids: set[int]  # the worker processes, as the supervisor's children and as /health/live answered


@contextlib.contextmanager
def serve_workers(config: Path, n: int, timeout: float = 60.0) -> Iterator[Workers]:
    """``switchyard serve --workers n`` on a free port; yields once every worker answers on that port (a fresh
    connection at a time, until /health/live has named each of the supervisor's n children)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [*serve_cmd(config, port), "--workers", str(n)]
    with run_process(cmd, f"{url}/health/ready", env=clean_env(), timeout=timeout) as proc:
        deadline = time.monotonic() + timeout
        seen: set[int] = set()
        children: set[int] = set()
        while True:
            children = children_of(proc.proc.pid)
            with contextlib.suppress(httpx.HTTPError), httpx.Client(timeout=5, verify=SSL) as c:
                r = c.get(f"{url}/health/ready")
                if r.status_code == 200:
                    seen.add(int(c.get(f"{url}/health/live").json()["pid"]))
            if len(children) == n and seen >= children:
                break
            if proc.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{n} workers did not all answer on port {port}: children {children}, "
                                     f"answered {seen}\n{proc.output()[-4000:]}")
            time.sleep(0.02)
        assert seen == children and proc.proc.pid not in seen, (seen, children, proc.proc.pid)
        yield Workers(url, proc, children)


async def call_on_fresh_connection(url: str, method: str, path: str, **kw: Any) -> tuple[httpx.Response, int]:
    """One request on a connection of its own; returns the response and the pid of the worker that answered it
    (asked with ``/health/live`` on the same connection, right after)."""
    async with httpx.AsyncClient(base_url=url, timeout=60, verify=SSL, limits=httpx.Limits(max_connections=1,
                                                                               max_keepalive_connections=1)) as c:
        r = await c.request(method, path, **kw)
        await r.aread()
        live = await c.get("/health/live")
        assert local_addr(live) == local_addr(r), "the connection was not kept alive: cannot tell the worker"
        return r, int(live.json()["pid"])


async def burst(url: str, n: int, method: str, path: str, **kw: Any) -> list[tuple[httpx.Response, int]]:
    """``n`` concurrent requests, each on a fresh connection (so the kernel spreads them over the workers)."""
    return list(await asyncio.gather(*(call_on_fresh_connection(url, method, path, **kw) for _ in range(n))))


class Pinned:
    """A kept-alive connection to one particular worker: fresh connections are opened until one lands on ``pid``;
    every request checks that it still went over that connection."""

    def __init__(self, url: str, pid: int, headers: dict[str, str] | None = None, tries: int = 200) -> None:
        self.pid = pid
        for _ in range(tries):
            c = httpx.Client(base_url=url, timeout=10, headers=headers or {}, verify=SSL,
                             limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
            live = c.get("/health/live")
            if int(live.json()["pid"]) == pid:
                self.client, self.addr = c, local_addr(live)
                return
            c.close()
        raise AssertionError(f"no connection of {tries} landed on worker {pid}")

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        r = self.client.request(method, path, **kw)
        assert local_addr(r) == self.addr, f"the connection to worker {self.pid} was replaced"
        return r

    def close(self) -> None:
        self.client.close()


def settled(prefix: str, budget_id: str) -> dict[str, str]:
    """The Redis ledger's hash for a budget's current period (``su``: settled USD in 1e-8, ``ru``: reserved)."""
    r = redis.Redis.from_url(redis_url(), decode_responses=True)
    try:
        keys = [k for k in r.scan_iter(match=f"{prefix}b:{budget_id}:*") if not k.endswith((":h", ":x"))]
        assert len(keys) == 1, keys
        return {str(k): str(v) for k, v in r.hgetall(keys[0]).items()}
    finally:
        r.close()
