"""A store outage never looks like a bad key. The gateway reaches PostgreSQL through a TCP proxy that the test
takes down (connections cut, port closed) and brings back: cached keys keep working, an uncached key gets 503
``governance_unavailable`` (never 401), and everything recovers, call audit records included, once it is back."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from sqlalchemy.engine import make_url

from tests.support.gateway import MASTER_KEY, RunningGateway, run_gateway
from tests.support.governance import Admin, gov_config, sdk_http_client
from tests.support.pg import pg_database_url
from tests.support.servers import free_port

HI: Any = [{"role": "user", "content": "hi"}]


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; ``down()`` cuts every connection and stops listening."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def up(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        self._listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def down(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone would not
            self._listener.close()
            self._listener = None
        with self._lock:
            for c in self._open:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
                c.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()


@pytest.fixture
def proxied() -> Iterator[tuple[str, TcpProxy]]:
    with pg_database_url() as url:
        real = make_url(url)
        proxy = TcpProxy((real.host or "127.0.0.1", real.port or 5432))
        proxy.up()
        try:
            yield real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False), proxy
        finally:
            proxy.down()


def call(gw: RunningGateway, key: str) -> int:
    """The status of one chat call with the openai SDK."""
    with openai.OpenAI(base_url=gw.openai_base, api_key=key, max_retries=0, http_client=sdk_http_client()) as c:
        try:
            c.chat.completions.create(model="sim-a", messages=HI)
        except openai.APIStatusError as e:
            if e.status_code == 503:
                assert e.code == "governance_unavailable", e.body
            return e.status_code
    return 200


def test_postgres_down_cached_keys_work_and_nothing_returns_401(proxied: tuple[str, TcpProxy]) -> None:
    url, proxy = proxied
    with run_gateway(gov_config(url)) as gw:
        admin = Admin(gw.url)
        org = admin.org()
        user = admin.user(org_id=org["id"])
        cached = admin.new_key(user_id=user["id"])
        uncached = admin.new_key(user_id=user["id"])
        assert call(gw, cached["secret"]) == 200

        proxy.down()
        statuses = {call(gw, cached["secret"]) for _ in range(10)}  # across several failed polls
        assert statuses == {200}
        assert call(gw, uncached["secret"]) == 503  # valid, but we cannot know: never 401
        assert call(gw, "sk-sy-" + "Z" * 43) == 503  # nor for a key that may or may not exist
        assert call(gw, MASTER_KEY) == 200
        r = admin.request("GET", "/admin/keys")
        assert r.status_code == 503 and r.json()["error"]["code"] == "governance_unavailable"
        governance = gw.gateway.governance
        assert governance is not None and governance.call_auditor is not None
        assert governance.call_auditor.pending() >= 10  # the outage's call records wait in memory

        proxy.up()
        for _ in range(100):
            if call(gw, uncached["secret"]) == 200:
                break
        else:
            raise AssertionError("the uncached key was not served after the store came back")
        assert call(gw, "sk-sy-" + "A" * 43) == 401  # now we can tell: unknown
        admin.post(f"/admin/keys/{cached['id']}/revoke", expect=200)
        assert call(gw, cached["secret"]) == 401
        for _ in range(100):
            if governance.call_auditor.pending() == 0:
                break
            time.sleep(0.05)
        calls = admin.get("/admin/audit", org_id=org["id"], kind="call", limit=1000)["data"]
        assert sum(r["actor"] == cached["id"] and r["status"] == 200 for r in calls) == 11
        assert admin.get("/admin/audit/verify")["ok"] is True
        admin.close()
