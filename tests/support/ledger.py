"""Helpers for the ledger tests: a Redis key prefix per test, a priced gateway config, tenants with budgets.

Every request to the ``exact`` deployment costs exactly $0.05: the simulated provider answers 50 tokens, output is
priced at $1000 per million (so $0.001 a token) and input is free; the tests ask for ``max_tokens=50``, so the
reservation (the worst case) is exactly the real cost too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
import yaml

from .gateway import base_config
from .governance import Admin
from .servers import ManagedProcess, free_port, run_process

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
HI: Any = [{"role": "user", "content": "hi"}]
EXACT = {"name": "exact", "provider": "sim", "price": {"input": 0.0, "output": 1000.0}}


def redis_url() -> str:
    return os.environ.get("SWITCHYARD_TEST_REDIS_URL", DEFAULT_REDIS_URL)


def require_redis() -> None:
    """Skip the test when nothing listens at the test Redis's address (the service is truly absent)."""
    u = redis.Redis.from_url(redis_url()).connection_pool.connection_kwargs
    host, port = u.get("host", "127.0.0.1"), int(u.get("port", 6379))
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as e:
        pytest.skip(f"Redis is not reachable at {host}:{port}: {e}")


@contextlib.contextmanager
def redis_prefix() -> Iterator[str]:
    """A key prefix of our own in the test Redis; every key under it is deleted afterwards."""
    require_redis()
    prefix = f"sy-test-{secrets.token_hex(6)}:"
    try:
        yield prefix
    finally:
        delete_prefix(prefix)


def delete_prefix(prefix: str) -> None:
    r = redis.Redis.from_url(redis_url())
    try:
        keys = list(r.scan_iter(match=prefix + "*", count=1000))
        for i in range(0, len(keys), 500):
            r.delete(*keys[i:i + 500])
    finally:
        r.close()


def ledger_config(store: str, spool: Path, *, redis: str | None = None, prefix: str | None = None,
                  ttft_ms: float = 0.0, output_tokens: int = 50, ledger: dict[str, Any] | None = None,
                  **overrides: Any) -> dict[str, Any]:
    led: dict[str, Any] = {"spool": {"dir": str(spool), "flush_interval": 0.05}, **(ledger or {})}
    if redis is not None:
        led["redis"] = redis
        led["key_prefix"] = prefix or "sy-test:"
        # A burst of 200 reservations on a loaded CI machine can wait longer than the default 0.5 s for a pooled
        # connection; these tests are about exactness, not about Redis being slow (the fault tests set their own).
        led.setdefault("redis_timeout", 5.0)
    cfg = base_config(
        store=store,
        providers={"sim": {"type": "simulated", "output_tokens": output_tokens, "ttft_ms": ttft_ms}},
        deployments=[EXACT, {"name": "cheap", "provider": "sim", "price": {"input": 1.0, "output": 2.0}}],
        routes={},
        governance={"poll_interval": 0.2, "audit": {"enabled": False}},
        ledger=led,
    )
    cfg.update(overrides)
    return cfg


def tenant(admin: Admin, *, budget: dict[str, Any] | None = None, rate_limit: dict[str, Any] | None = None,
           scope: str = "key", tags: list[str] | None = None) -> dict[str, Any]:
    """An org, a team, a user in it and a key of the user's, with an optional budget and rate limit on ``scope``
    (key, user, team, org). Returns the ids and the key's secret."""
    org = admin.org()
    team = admin.team(org["id"])
    user = admin.user(org_id=org["id"], team_id=team["id"])
    key = admin.new_key(user_id=user["id"], tags=tags or [])
    ids = {"org": org["id"], "team": team["id"], "user": user["id"], "key": key["id"]}
    out: dict[str, Any] = {**ids, "secret": key["secret"]}
    if budget is not None:
        out["budget"] = admin.post("/admin/budgets", {"scope": scope, "scope_id": ids[scope], **budget})
    if rate_limit is not None:
        out["rate_limit"] = admin.post("/admin/rate_limits", {"scope": scope, "scope_id": ids[scope], **rate_limit})
    return out


def wait_for(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def spend_of(engine: sa.Engine, key_id: str) -> tuple[int, Decimal]:
    """(records, their summed cost) in request_log for one key."""
    with engine.connect() as conn:
        n, total = conn.execute(sa.text("SELECT count(*), coalesce(sum(cost), 0) FROM request_log "
                                        "WHERE key_id = :k"), {"k": key_id}).one()
    return int(n), Decimal(total).quantize(Decimal("1e-8"))  # SQLite sums NUMERIC as floats


def budget_total(engine: sa.Engine, budget_id: str) -> tuple[Decimal, int]:
    """(settled USD, requests) in budget_spend for a budget, all periods."""
    with engine.connect() as conn:
        usd, n = conn.execute(sa.text("SELECT coalesce(sum(usd_e8), 0), coalesce(sum(requests), 0) FROM budget_spend "
                                      "WHERE budget_id = :b"), {"b": budget_id}).one()
    return Decimal(int(usd)).scaleb(-8), int(n)




# --- gateway processes -------------------------------------------------------------------------------------------


@dataclass
class Replica:
    url: str
    process: ManagedProcess
    port: int


def serve_cmd(config: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "switchyard.cli.main", "serve", "--config", str(config), "--port", str(port),
            "--log-level", "warning"]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}


@contextlib.contextmanager
def replicas(config: Path, n: int, cwd: Path | None = None) -> Iterator[list[Replica]]:
    """``n`` ``switchyard serve`` processes on one config, started in parallel; killed (SIGTERM, then SIGKILL)
    afterwards."""
    ports = [free_port() for _ in range(n)]
    managers = [run_process(serve_cmd(config, p), f"http://127.0.0.1:{p}/health/ready", env=clean_env(), cwd=cwd,
                            timeout=40) for p in ports]
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(m.__enter__) for m in managers]
        started: list[Replica] = []
        failure: BaseException | None = None
        for m, f, port in zip(managers, futures, ports, strict=True):
            try:
                proc = f.result()
            except BaseException as e:
                failure = failure or e
                continue
            stack.push(m.__exit__)
            started.append(Replica(f"http://127.0.0.1:{port}", proc, port))
        if failure is not None:
            raise failure
        yield started


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


class Proxy:
    """A TCP forwarder on loopback to ``target``, for taking a service "down" and back ``up`` under a running
    gateway: ``down()`` closes the listening socket and resets every open connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def up(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(128)
        self._server = s
        threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def down(self) -> None:
        s, self._server = self._server, None
        if s is not None:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            with contextlib.suppress(OSError):
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, not FIN
            c.close()

    def _serve(self, s: socket.socket) -> None:
        while True:
            try:
                a, _ = s.accept()
            except OSError:
                return
            try:
                b = socket.create_connection(self.target, timeout=3)
            except OSError:
                a.close()
                continue
            with self._lock:
                if self._server is not s:
                    a.close()
                    b.close()
                    return
                self._conns += [a, b]
            for x, y in ((a, b), (b, a)):
                threading.Thread(target=self._pipe, args=(x, y), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
