"""``switchyard models``: the model catalog that deployments inherit facts from (``catalog: <id>``)."""

from __future__ import annotations

import csv
import sys

import click
import orjson
from rich.console import Console
from rich.table import Table

from ..routing.auto.models import TASK_TYPES, model_catalog
from .output import plain

_SHORT = {"code": "code", "math": "math", "summarization": "sum", "extraction": "ext", "translation": "tr",
          "creative": "cre", "chat": "chat", "tool_use": "tool", "vision": "vis", "long_context": "long"}


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="one JSON document, with every figure's source")
@click.option("--csv", "as_csv", is_flag=True, help="print CSV instead of a table")
@click.option("--vendor", default=None, help="only this vendor's models (openai, anthropic, google, ...)")
def models(as_json: bool, as_csv: bool, vendor: str | None) -> None:
    """List the model catalog: context window, output cap, prices per 1M tokens, capabilities, quality tiers."""
    cat = model_catalog()
    cards = [c for c in cat.models.values() if vendor is None or c.vendor == vendor]
    if as_json:
        doc = {"as_of": cat.as_of, "quality_basis": list(cat.quality_basis), "models": [{
            "id": c.id, "vendor": c.vendor, "aliases": list(c.aliases), "context_window": c.context_window,
            "max_output_tokens": c.max_output_tokens,
            "price": {"input": c.input_price, "output": c.output_price, "cached_input": c.cached_input_price,
                      "cache_write": c.cache_write_price, "cache_write_1h": c.cache_write_1h_price},
            "capabilities": sorted(c.capabilities), "quality": c.quality, "sources": c.sources} for c in cards]}
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        return
    if as_csv:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(["id", "vendor", "context_window", "max_output_tokens", "input_price", "output_price",
                    "cached_input_price", "cache_write_price", "cache_write_1h_price", "capabilities",
                    *(f"quality_{t}" for t in TASK_TYPES)])
        for c in cards:
            w.writerow([c.id, c.vendor, c.context_window or "", c.max_output_tokens or "", plain(c.input_price),
                        plain(c.output_price), "" if c.cached_input_price is None else plain(c.cached_input_price),
                        "" if c.cache_write_price is None else plain(c.cache_write_price),
                        "" if c.cache_write_1h_price is None else plain(c.cache_write_1h_price),
                        " ".join(sorted(c.capabilities)), *(c.quality[t] for t in TASK_TYPES)])
        return
    table = Table(title=f"model catalog (prices USD per 1M tokens, as of {cat.as_of}; tiers 1-5)",
                  title_justify="left")
    for col in ("id", "vendor", "context", "max out", "in", "out", "cached", "capabilities",
                *(_SHORT[t] for t in TASK_TYPES)):
        table.add_column(col, no_wrap=col == "id", overflow="fold")  # a model id is never cut
    for c in cards:
        table.add_row(c.id, c.vendor, f"{c.context_window:,}" if c.context_window else "-",
                      f"{c.max_output_tokens:,}" if c.max_output_tokens else "-", f"{c.input_price:g}",
                      f"{c.output_price:g}", "-" if c.cached_input_price is None else f"{c.cached_input_price:g}",
                      ",".join(sorted(c.capabilities - {"chat"})), *(f"{c.quality[t]:g}" for t in TASK_TYPES))
    Console(soft_wrap=True, width=max(Console().width, 170)).print(table)
    click.echo("sources: switchyard models --json (each model's price and limits pages)")
