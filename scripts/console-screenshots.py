#!/usr/bin/env python3
"""Screenshots of each console page, for docs/console.md: ``python scripts/console-screenshots.py [OUT_DIR]``.

Starts a governed gateway on a throwaway SQLite store (as the tests do: simulated deployments, the spend writer),
builds a small org through the admin API, makes calls with its keys, and photographs each page in Debian's Chromium
(``scripts/install-browser.sh``) driven by Playwright. The spend chart also shows a week of demo history, written
straight into the hourly rollups (the calls themselves all happen now). PNGs are reduced to 256 colours to stay
small. Run from the repository root with the dev extra installed.
"""

from __future__ import annotations

import datetime as dt
import io
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

import openai  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from PIL import Image  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402
from tests.support.console import console_gateway  # noqa: E402
from tests.support.gateway import MASTER_KEY  # noqa: E402
from tests.support.governance import Admin, sdk_http_client  # noqa: E402

from switchyard.store.spend_tables import spend_hourly  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
PAGES = ["sign-in", "overview", "spend", "budgets", "keys", "deployments", "requests", "audit"]


def seed(admin: Admin, gw: Any, t: Any) -> dict[str, str]:
    """Keys for a few people of both teams, calls with them, and budgets."""
    keys: dict[str, str] = {}
    for team, names in ((t.red, ("ana", "ben")), (t.blue, ("cho", "dev"))):
        for name in names:
            user = admin.user("member", team_id=team["id"], email=f"{name}@example.com")
            keys[name] = admin.new_key(user_id=user["id"], name=f"{name}-laptop",
                                       logging="full" if name == "ana" else "none")["secret"]
    admin.post("/admin/budgets", {"scope": "team", "scope_id": t.red["id"], "max_usd": 0.01, "period": "daily",
                                  "name": "red daily"})
    admin.post("/admin/budgets", {"scope": "team", "scope_id": t.blue["id"], "max_usd": 0.05, "period": "weekly",
                                  "name": "blue weekly"})
    admin.post("/admin/budgets", {"scope": "org", "scope_id": t.org["id"], "max_usd": 1, "period": "monthly",
                                  "name": "org monthly"})
    rng = random.Random(7)
    for name, secret in keys.items():
        with openai.OpenAI(base_url=gw.openai_base, api_key=secret, max_retries=0,
                           http_client=sdk_http_client()) as c:
            for i in range(rng.randint(3, 8)):
                model = "fast" if i % 3 else "sim-a"
                c.chat.completions.create(model=model, messages=[{"role": "user", "content": f"{name} asks #{i}"}])
    return keys


def history(store_url: str, t: Any) -> None:
    """A week of demo spend in the hourly rollups, so that the 7-day chart has bars before today."""
    engine = sa.create_engine(store_url)
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    rng = random.Random(11)
    rows = []
    for h in range(24 * 7, 1, -3):
        for team, scale in ((t.red["id"], 1.0), (t.blue["id"], 0.6)):
            n = rng.randint(5, 40)
            rows.append({"hour": now - dt.timedelta(hours=h), "org_id": t.org["id"], "team_id": team,
                         "user_id": "", "key_id": "", "route": "fast", "deployment": "sim-a", "provider": "sim",
                         "model": "fast", "requests": n, "errors": rng.randint(0, 2), "input_tokens": n * 40,
                         "output_tokens": n * 20, "cached_tokens": 0, "reasoning_tokens": 0,
                         "cost_e8": int(n * 8000 * scale * rng.uniform(0.5, 1.5)), "latency_ms": n * 350.0})
    with engine.begin() as conn:
        conn.execute(sa.insert(spend_hourly), rows)
    engine.dispose()


def shoot(page: Any, path: Path) -> None:
    png = page.screenshot(full_page=False)
    img = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    img.save(path, optimize=True)
    print(f"{path} ({path.stat().st_size // 1024} KiB)")


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "img"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, console_gateway(Path(tmp)) as (gw, admin, t):
        seed(admin, gw, t)
        history(gw.config.store, t)
        time.sleep(1.0)  # the spend writer ships every 50 ms; the audit log appends every 50 ms
        base = gw.url
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = browser.new_context(viewport={"width": 1280, "height": 820}).new_page()
            page.goto(f"{base}/ui/sign-in")
            shoot(page, out / "console-sign-in.png")
            page.fill("#key", MASTER_KEY)
            page.click("#sign-in")
            page.wait_for_url(f"{base}/ui/")
            page.wait_for_timeout(5500)  # one refresh, so that the process panel shows a rate
            shoot(page, out / "console-overview.png")
            page.goto(f"{base}/ui/spend?by=team&range=7d")
            shoot(page, out / "console-spend.png")
            page.goto(f"{base}/ui/budgets")
            shoot(page, out / "console-budgets.png")
            page.goto(f"{base}/ui/keys")
            page.fill("#key-name", "ci-bot")
            page.select_option("#key-owner", index=1)
            page.click("#create")
            page.wait_for_selector("#new-secret")
            shoot(page, out / "console-keys.png")
            page.goto(f"{base}/ui/deployments")
            shoot(page, out / "console-deployments.png")
            page.goto(f"{base}/ui/requests")
            page.locator("#requests tr", has_text="ana-laptop").first.locator("a").click()
            page.wait_for_selector("#payload")
            page.evaluate("window.scrollTo(0, 0)")
            shoot(page, out / "console-requests.png")
            page.goto(f"{base}/ui/audit")
            page.click("#verify-chain")
            page.wait_for_selector("#verify-result")
            shoot(page, out / "console-audit.png")
            browser.close()


if __name__ == "__main__":
    main()
