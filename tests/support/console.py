"""Helpers for the console tests: a governed gateway with a spend writer (so spend and the request log fill in), two
teams of one org with an org admin, a team admin, an auditor and a member, and a console client over plain HTTP."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from switchyard.config.ledger import SpoolSettings
from switchyard.governance.spend import SpendWriter
from switchyard.store import Store

from .gateway import RunningGateway, run_gateway
from .governance import Admin, gov_config, store_url


@dataclass
class Tenant:
    org: dict[str, Any]
    red: dict[str, Any]  # a team
    blue: dict[str, Any]  # another team of the same org
    org_admin: str  # secrets of keys
    red_admin: str
    blue_admin: str
    auditor: str
    member: str
    member_user: dict[str, Any]


@contextlib.contextmanager
def console_gateway(tmp: Path, backend: str = "sqlite",
                    **overrides: Any) -> Iterator[tuple[RunningGateway, Admin, Tenant]]:
    """A gateway on a fresh store (SQLite, or a throwaway PostgreSQL database) with the durable spend writer (the
    request log and hourly rollups fill in as ``switchyard serve`` fills them) and a tenant built through the admin
    API."""
    with store_url(backend, tmp) as url:
        store = Store.open(url)
        cfg = gov_config(url, ledger={"spool": {"dir": str(tmp / "spool"), "flush_interval": 0.05}}, **overrides)
        writer = SpendWriter(store.engine, SpoolSettings(dir=str(tmp / "spool"), flush_interval=0.05))
        try:
            with run_gateway(cfg, recorder=writer) as gw:
                admin = Admin(gw.url)
                yield gw, admin, tenant(admin)
                admin.close()
        finally:
            store.close()


def tenant(admin: Admin) -> Tenant:
    org = admin.org()
    red = admin.team(org["id"], name="red")
    blue = admin.team(org["id"], name="blue")
    _, org_admin = admin.user_with_key("org_admin", org_id=org["id"])
    _, red_admin = admin.user_with_key("team_admin", team_id=red["id"])
    _, blue_admin = admin.user_with_key("team_admin", team_id=blue["id"])
    _, auditor = admin.user_with_key("auditor", org_id=org["id"])
    member_user, member = admin.user_with_key("member", team_id=red["id"])
    return Tenant(org, red, blue, org_admin, red_admin, blue_admin, auditor, member, member_user)


class Console:
    """A console session over plain HTTP: ``sign_in`` posts the form as a browser would (with the sign-in cookie
    and the Origin header); ``csrf`` is the token the pages carry."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=10, follow_redirects=False,
                                 limits=httpx.Limits(max_keepalive_connections=0))
        self.csrf: str | None = None

    def sign_in(self, key: str, expect: int = 303) -> httpx.Response:
        form = self.http.get("/ui/sign-in")
        assert form.status_code == 200, form.text
        login = re.search(r'name="login" value="([^"]+)"', form.text)
        assert login is not None
        r = self.http.post("/ui/sign-in", data={"login": login.group(1), "key": key},
                           headers={"origin": self.base_url})
        assert r.status_code == expect, f"{r.status_code} {r.text[:300]}"
        if expect == 303:
            page = self.get("/ui/")
            assert page.status_code == 200, page.text[:300]
            self.csrf = token_in(page.text)
        return r

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params or None)

    def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True, htmx: bool = False,
             origin: str | None = None) -> httpx.Response:
        headers = {"origin": origin or self.base_url}
        if csrf and self.csrf:
            headers["x-csrf-token"] = self.csrf
        if htmx:
            headers["hx-request"] = "true"
        return self.http.post(path, data=data or {}, headers=headers)

    def close(self) -> None:
        self.http.close()


def token_in(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m is not None, "no CSRF token on the page"
    return m.group(1)
