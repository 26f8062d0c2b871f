"""The console in a real browser: Playwright drives Debian's Chromium (``/usr/bin/chromium``; never a browser
downloaded by ``playwright install``). An org admin signs in, creates a key (its secret shown once), the key makes
calls through the openai SDK, their spend appears, the key is revoked from the page and then gets 401; a team admin
cannot see the other team, neither on the pages nor by URL. Every page is loaded under the console's strict CSP, and
the test fails on any CSP violation or script error.

Skips only when Chromium (or the playwright package) is absent, and says so: ``scripts/install-browser.sh`` installs
Debian's chromium.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.console import Tenant, console_gateway
from tests.support.gateway import RunningGateway
from tests.support.governance import Admin, sdk_http_client

CHROMIUM = os.environ.get("SWITCHYARD_CHROMIUM", "/usr/bin/chromium")

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"no Chromium at {CHROMIUM}: run scripts/install-browser.sh (Debian's chromium)")
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (dev extra)")


@pytest.fixture
def browser_page() -> Iterator[tuple[Any, list[str]]]:
    """A page of a fresh Chromium, and the list its CSP violations and script errors are collected in."""
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_context().new_page()
            page.set_default_timeout(10_000)
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            yield page, problems
        finally:
            browser.close()


def sign_in(page: Any, base: str, key: str) -> None:
    page.goto(f"{base}/ui/keys")
    assert page.url.endswith("/ui/sign-in")  # not signed in yet: sent to the form
    page.fill("#key", key)
    page.click("#sign-in")
    page.wait_for_url(f"{base}/ui/")


def test_sign_in_create_spend_revoke_and_team_isolation(tmp_path: Path,
                                                        browser_page: tuple[Any, list[str]]) -> None:
    page, problems = browser_page
    expect = sync_api.expect
    with console_gateway(tmp_path) as (gw, admin, t):
        base = gw.url
        sign_in(page, base, t.org_admin)
        expect(page.locator("h1")).to_contain_text("Overview")
        expect(page.locator("#who")).to_have_text("org admin")

        # create a key for a member of team red: the secret appears once
        page.click("text=Keys")
        page.fill("#key-name", "browser-key")
        page.select_option("#key-owner", f"user:{t.member_user['id']}")
        page.click("#create")
        secret = page.locator("#new-secret").inner_text().strip()
        assert re.fullmatch(r"sk-sy-[A-Za-z0-9_-]{43}", secret)
        row = page.locator("#keys-body tr", has_text="browser-key")
        expect(row).to_have_count(1)  # added to the table by the same reply
        key_id = (row.get_attribute("id") or "").removeprefix("key-")
        page.reload()
        assert secret not in page.content()  # never shown again

        # calls with it through the openai SDK; their spend appears
        _calls(gw, secret, 3)
        _until(page, f"{base}/ui/spend?by=key&range=24h", "#spend-table", "browser-key")
        cost = page.locator("#spend-table tr", has_text="browser-key").locator("td.cost").inner_text()
        assert cost.startswith("$") and cost != "$0.00"
        _until(page, f"{base}/ui/", "#spend-today", "$", absent="$0.00")
        page.goto(f"{base}/ui/requests")
        expect(page.locator("#requests")).to_contain_text("browser-key")
        page.locator("#requests tbody a").first.click()  # the detail, loaded into the side panel by htmx
        expect(page.locator("#detail")).to_contain_text("sim-a")

        # revoke it from the page (a confirm dialog first); the key then gets 401
        page.goto(f"{base}/ui/keys")
        page.once("dialog", lambda d: d.accept())
        page.locator(f"#key-{key_id} button.revoke").click()
        expect(page.locator(f"#key-{key_id}")).to_contain_text("revoked")
        with pytest.raises(openai.AuthenticationError) as e:
            _calls(gw, secret, 1)
        assert e.value.status_code == 401
        assert admin.get(f"/admin/keys/{key_id}")["status"] == "revoked"

        # the audit log and its verification
        page.goto(f"{base}/ui/audit")
        expect(page.locator("#audit")).to_contain_text("key.revoke")
        page.click("#verify-chain")
        expect(page.locator("#verify-result")).to_contain_text("Chain intact")

        # sign out; a team admin of red sees red only
        page.click("text=Sign out")
        page.wait_for_url(f"{base}/ui/sign-in")
        blue_key, blue_secret = _blue_key(admin, t)
        _calls(gw, blue_secret, 2)  # blue has spend and requests too, which red must not see
        sign_in(page, base, t.red_admin)
        expect(page.locator("nav")).not_to_contain_text("Audit log")
        page.goto(f"{base}/ui/keys?revoked=1")
        expect(page.locator("#keys")).to_contain_text("browser-key")  # red's keys (the revoked one too)...
        expect(page.locator("#keys")).not_to_contain_text("blue-only")  # ...never blue's
        _until(page, f"{base}/ui/spend?by=team&range=24h", "#spend-table", "red")
        expect(page.locator("#spend-table")).not_to_contain_text("blue")
        page.goto(f"{base}/ui/requests")
        expect(page.locator("#requests")).not_to_contain_text("blue-only")
        for path in ("spend", "keys", "requests", "budgets"):
            response = page.goto(f"{base}/ui/{path}?team={t.blue['id']}")
            assert response is not None and response.status == 404, path
            expect(page.locator("#error")).to_contain_text("No team")
        response = page.goto(f"{base}/ui/audit")
        assert response is not None and response.status == 403
        assert admin.get(f"/admin/keys/{blue_key}")["status"] == "active"
    assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems
    assert not [p for p in problems if "404" not in p and "403" not in p], problems


def _calls(gw: RunningGateway, key: str, n: int) -> None:
    with openai.OpenAI(base_url=gw.openai_base, api_key=key, max_retries=0, http_client=sdk_http_client()) as c:
        for _ in range(n):
            c.chat.completions.create(model="sim-a", messages=[{"role": "user", "content": "hello"}])


def _until(page: Any, url: str, selector: str, text: str, absent: str | None = None, tries: int = 50) -> None:
    """Reload ``url`` until ``selector`` shows ``text`` (and is not ``absent``): the spend writer ships every 50 ms
    here."""
    for _ in range(tries):
        page.goto(url)
        shown = page.locator(selector).inner_text()
        if text in shown and shown != absent:
            return
        page.wait_for_timeout(200)
    raise AssertionError(f"{url}: {selector} never showed {text!r}")


def _blue_key(admin: Admin, t: Tenant) -> tuple[str, str]:
    user = admin.user("member", team_id=t.blue["id"])
    key = admin.new_key(user_id=user["id"], name="blue-only")
    return str(key["id"]), str(key["secret"])
