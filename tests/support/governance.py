"""Helpers for the governance tests: a store on each backend, a gateway config, and an admin API client."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2

from .gateway import MASTER_KEY, base_config
from .pg import pg_database_url

BACKENDS = ["sqlite", "postgresql"]


@contextlib.contextmanager
def store_url(backend: str, tmp: Path) -> Iterator[str]:
    """A fresh, empty store: a SQLite file under ``tmp``, or a throwaway PostgreSQL database."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp}/gov-{uuid.uuid4().hex[:8]}.db"
    else:
        with pg_database_url() as url:
            yield url


def gov_config(store: str, **overrides: Any) -> dict[str, Any]:
    """A gateway config on ``store`` with the master key, simulated deployments ``sim-a``/``sim-b``/``sim-c``,
    a route ``fast`` (over sim-a) and a fast change poll."""
    cfg = base_config(
        store=store,
        providers={"sim": {"type": "simulated", "output_tokens": 4}},
        deployments=[
            {"name": "sim-a", "provider": "sim", "price": {"input": 1.0, "output": 2.0}},
            {"name": "sim-b", "provider": "sim"},
            {"name": "sim-c", "provider": "sim", "capabilities": ["embeddings"]},
        ],
        routes={"fast": {"targets": ["sim-a"]}},
        governance={"poll_interval": 0.2, "audit": {"flush_interval": 0.05}},
    )
    cfg.update(overrides)
    return cfg


def no_keepalive_client(base_url: str = "") -> httpx.Client:
    """An httpx client that opens a connection per request. On loopback, a kept-alive connection to the
    in-process uvicorn stalls ~40 ms per request (delayed ACKs); a fresh one answers in ~1 ms."""
    return httpx.Client(base_url=base_url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0))


def sdk_http_client() -> httpx2.Client:
    """The same, for the openai and anthropic SDKs (which are built on httpx2)."""
    return httpx2.Client(timeout=10, limits=httpx2.Limits(max_keepalive_connections=0))


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


class Admin:
    """An admin API client: ``call`` asserts the status and returns the JSON body."""

    def __init__(self, base_url: str, key: str = MASTER_KEY) -> None:
        self.base_url = base_url
        self.key = key
        self.http = no_keepalive_client(base_url)

    def as_key(self, key: str) -> Admin:
        other = Admin.__new__(Admin)
        other.base_url, other.key, other.http = self.base_url, key, self.http
        return other

    def request(self, method: str, path: str, json: Any = None, **params: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.key}"} if self.key else {}
        return self.http.request(method, path, json=json, params=params or None, headers=headers)

    def call(self, method: str, path: str, json: Any = None, expect: int = 200, **params: Any) -> Any:
        r = self.request(method, path, json, **params)
        assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def get(self, path: str, expect: int = 200, **params: Any) -> Any:
        return self.call("GET", path, expect=expect, **params)

    def post(self, path: str, json: Any = None, expect: int = 201) -> Any:
        return self.call("POST", path, json, expect=expect)

    def patch(self, path: str, json: Any, expect: int = 200) -> Any:
        return self.call("PATCH", path, json, expect=expect)

    def delete(self, path: str, expect: int = 200) -> Any:
        return self.call("DELETE", path, expect=expect)

    # --- building a tenant -------------------------------------------------------------------------------------

    def org(self, name: str | None = None) -> dict[str, Any]:
        return dict(self.post("/admin/orgs", {"name": name or unique("org")}))

    def team(self, org_id: str, **kw: Any) -> dict[str, Any]:
        return dict(self.post("/admin/teams", {"name": unique("team"), "org_id": org_id, **kw}))

    def user(self, role: str = "member", **kw: Any) -> dict[str, Any]:
        return dict(self.post("/admin/users", {"email": f"{unique('u')}@example.com", "role": role, **kw}))

    def new_key(self, **kw: Any) -> dict[str, Any]:
        return dict(self.post("/admin/keys", kw))

    def user_with_key(self, role: str, **placement: Any) -> tuple[dict[str, Any], str]:
        """A user with ``role`` and a key of theirs; returns (user, secret)."""
        user = self.user(role, **placement)
        return user, str(self.new_key(user_id=user["id"])["secret"])

    def close(self) -> None:
        self.http.close()
