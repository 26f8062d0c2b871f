"""How the store commands print: a table that never cuts a cell, ``--json`` or ``--csv``; decimals fixed-point.

A table on a terminal keeps each id on one line when the ids fit and folds them when the terminal is too narrow
(a folded id is still whole, never ``vk_3f2a…``); a pipe or a file gets the whole table on as wide a line as it
needs. Amounts are fixed-point text in tables and CSV: ``0.00``, never ``0E-8``; JSON keeps the API's own values.
"""

from __future__ import annotations

import csv
import datetime as dt
import sys
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import click
import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

csv_option = click.option("--csv", "as_csv", is_flag=True, help="print CSV instead of a table")
json_option = click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")


def console() -> Console:
    """stdout as a console: the terminal's width, or (a pipe, a file) no width limit at all."""
    return Console() if sys.stdout.isatty() else Console(width=100_000)


def print_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=_json_default).decode())


def _json_default(v: Any) -> Any:
    """What orjson does not know: a Decimal as fixed-point text, a set as a sorted list, anything else as text."""
    if isinstance(v, Decimal):
        return plain(v)
    if isinstance(v, set | frozenset):
        return sorted(v, key=str)
    return str(v)


def plain(v: Any) -> Any:
    """A value for a table or CSV: a Decimal or float as fixed-point text with at least two decimals (``0.00``,
    ``1.50``, ``0.00012``; never ``0E-8`` or ``1e-05``); a date-time as ISO 8601; anything else as it is."""
    if isinstance(v, float) and v == v and v not in (float("inf"), float("-inf")):
        v = Decimal(repr(v))
    if isinstance(v, Decimal):
        if v == 0:
            return "0.00"
        whole, _, frac = format(v, "f").partition(".")
        return f"{whole}.{frac.rstrip('0').ljust(2, '0')}"
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    return v


def amount(v: Any) -> Any:
    """:func:`plain` for an amount that may come as decimal text (the status's ``"0.00000000"``)."""
    if isinstance(v, str):
        try:
            return plain(Decimal(v))
        except InvalidOperation:
            return v
    return plain(v)


def _is_id(col: str) -> bool:
    return col in ("id", "prefix", "key_prefix") or col.endswith("_id")


def emit(rows: Sequence[dict[str, Any]], cols: Sequence[str], as_json: bool, as_csv: bool,
         amounts: Iterable[str] = ()) -> None:
    """Rows as a table (no cell is ever cut), JSON (the rows as they are) or CSV. ``amounts``: the columns printed
    as amounts (fixed-point) in a table or CSV."""
    if as_json:
        print_json(list(rows))
        return
    money = set(amounts)

    def cell(c: str, v: Any) -> Any:
        return amount(v) if c in money else plain(v)

    if as_csv:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if r.get(c) is None else _text(cell(c, r.get(c)), " ") for c in cols])
        return
    out = console()
    keep = unwrapped(out, cols, rows, [c for c in cols if _is_id(c)])
    table = Table()
    for c in cols:
        table.add_column(c, overflow="fold", no_wrap=c in keep, justify="right" if c in money else "left")
    for r in rows:
        table.add_row(*[Text("-" if r.get(c) is None else _text(cell(c, r.get(c)))) for c in cols])  # no markup
    out.print(table)


def unwrapped(out: Console, cols: Sequence[str], rows: Sequence[dict[str, Any]], ids: Sequence[str]) -> set[str]:
    """The columns a table keeps on one line: all of them off a terminal (no width limit); on a terminal, the id
    columns when they and a few characters of every other column fit (else they fold: ``no_wrap`` would crop)."""
    if not sys.stdout.isatty():
        return set(cols)
    width = sum(max([len(c), *(len(str(r.get(c) or "")) for r in rows)]) for c in ids)
    return set(ids) if width + 3 * len(cols) + 1 + 8 * (len(cols) - len(ids)) <= out.width else set()


def _text(v: Any, sep: str = ", ") -> str:
    if isinstance(v, list | tuple):
        return sep.join(str(x) for x in v)
    if isinstance(v, dict):
        return orjson.dumps(v).decode()
    return str(v)
