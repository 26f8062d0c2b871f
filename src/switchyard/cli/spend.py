"""``switchyard spend report``: spend from the hourly rollups, straight on the store named by ``--config``.

Like the other store commands, whoever can read the config and reach the store sees every org (the CLI is a super
admin); ``--org``/``--team``/``--user``/``--key`` narrow the report.
"""

from __future__ import annotations

import csv
import datetime as dt
import sys
from decimal import Decimal
from typing import Any

import click
import orjson
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..errors import SwitchyardError
from ..governance.spend_report import (
    METRIC_COLUMNS,
    SpendQuery,
    clean_filters,
    headers_for,
    parse_group_by,
    report,
    time_range,
)
from ..store.db import create_engine_for, migrate
from .keys import config_option, load, warn_if_new_store
from .output import console, plain, unwrapped

__all__ = ["plain", "spend"]

err = Console(stderr=True, soft_wrap=True)  # an error or warning stays on one line, however long


def _when(value: str | None, name: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"not an ISO date or date-time: {value!r}", param_hint=name) from None


@click.group()
def spend() -> None:
    """Spend: requests, tokens and cost per team, key, deployment..."""


@spend.command("report")
@config_option
@click.option("--group-by", default="team", show_default=True,
              help="comma-separated: org, team, user, key, route, deployment, provider, model, tag, hour, day")
@click.option("--from", "start", default=None, help="start (ISO date or date-time, UTC unless it says); "
                                                      "default: 30 days before --to")
@click.option("--to", "end", default=None, help="end, exclusive; default: now")
@click.option("--org", "org_id", default=None)
@click.option("--team", "team_id", default=None)
@click.option("--user", "user_id", default=None)
@click.option("--key", "key_id", default=None)
@click.option("--deployment", default=None)
@click.option("--model", default=None)
@click.option("--tag", default=None)
@click.option("--csv", "as_csv", is_flag=True, help="print CSV instead of a table")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def report_command(config_path: str, group_by: str, start: str | None, end: str | None, as_csv: bool,
                   as_json: bool, **filters: str | None) -> None:
    """Spend grouped as asked, from the hourly rollups (the range is rounded out to whole hours)."""
    cfg = load(config_path)
    warn_if_new_store(cfg, config_path)
    try:
        groups = parse_group_by(group_by)
        s, e = time_range(_when(start, "--from"), _when(end, "--to"))
        q = SpendQuery(groups, s, e, clean_filters(filters))
        engine = create_engine_for(cfg.store)
        try:
            migrate(engine)
            with engine.connect() as conn:
                rows = report(conn, q)
        finally:
            engine.dispose()
    except SwitchyardError as ex:
        err.print(f"[red]error:[/red] {ex.message}", highlight=False)
        sys.exit(1)
    except sa.exc.OperationalError as ex:
        err.print(f"[red]error:[/red] the store is unreachable ({type(ex.orig or ex).__name__})", highlight=False)
        sys.exit(1)
    cols = headers_for(groups)
    if as_json:
        click.echo(orjson.dumps([{c: _json(r.get(c)) for c in cols} for r in rows],
                                option=orjson.OPT_INDENT_2).decode())
        return
    if as_csv:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if r.get(c) is None else plain(r.get(c)) for c in cols])
        return
    _table(rows, groups, cols, s, e)


def _table(rows: list[dict[str, Any]], groups: list[str], cols: list[str], s: dt.datetime, e: dt.datetime) -> None:
    title = f"Spend {s:%Y-%m-%d %H:%M} to {e:%Y-%m-%d %H:%M} UTC" + (f" by {', '.join(groups)}" if groups else "")
    t = Table(title=title)
    out = console()
    keep = unwrapped(out, cols, rows, [g for g in groups if g in ("org", "team", "user", "key")])
    for c in cols:  # an id is kept on one line when it fits, else folded: never cut
        t.add_column(c, justify="right" if c in METRIC_COLUMNS or c in ("cost_usd", "avg_latency_ms") else "left",
                     overflow="fold", no_wrap=c in keep)
    total_cost = sum((r["cost_usd"] for r in rows), Decimal(0))
    for r in rows:
        t.add_row(*[Text(_cell(c, r.get(c))) for c in cols])
    out.print(t)
    out.print(f"{len(rows)} rows; {sum(r['requests'] for r in rows):,} requests; total ${total_cost:,.2f}",
              highlight=False)


def _json(v: Any) -> Any:
    """A value for JSON: amounts (Decimals) as fixed-point text (``"0.00"``), numbers as numbers."""
    return v if isinstance(v, float | int) else plain(v)


def _cell(col: str, v: Any) -> str:
    if v is None:
        return "-"
    if col == "cost_usd":
        return f"${v:,.4f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(plain(v))
