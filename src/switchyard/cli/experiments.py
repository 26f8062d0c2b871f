"""``switchyard experiments list|report|promote|stop``: experiments between prompt versions and models.

``report ID`` prints the per-variant table and the two-variant comparison; with ``--charts DIR`` it also writes
PNG charts (matplotlib, from the ``bench`` extra, imported only then): each metric over time per variant
(``metric-NAME.png``) and cost per request against quality (``cost-quality.png``). ``promote ID VARIANT`` moves
the experiment's label to the variant's version and stops it, in one audited transaction.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from ..prompts import experiments as exps
from ..prompts.models import Promote, Report
from .keys import config_option, err, governance, load, operate, out
from .output import csv_option, emit, json_option
from .output import print_json as _print_json


@click.group()
def experiments() -> None:
    """Experiments: list, report (table and charts), promote a variant, stop."""


def _metrics(config_path: str) -> dict[str, Any]:
    return {k: m.model_dump() for k, m in load(config_path).prompts.metrics.items()}


@experiments.command("list")
@config_option
@json_option
@csv_option
def list_(config_path: str, as_json: bool, as_csv: bool) -> None:
    """Every experiment: its prompt, status, variants and allocation."""
    with governance(config_path) as gov:
        rows = operate(gov, exps.list_experiments)
    if as_json:
        _print_json([r.model_dump(mode="json") for r in rows])
        return
    emit([{"id": r.id, "name": r.name, "prompt": r.prompt, "model": r.model, "status": r.status,
           "variants": [v["name"] for v in r.spec["variants"]], "allocation": r.spec.get("allocation", "fixed")}
          for r in rows], ["id", "name", "prompt", "model", "status", "variants", "allocation"], False, as_csv)


def _fmt(x: Any, digits: int = 3) -> str:
    """``digits`` significant digits in fixed point: a cost of 1.23e-05 prints as 0.0000123, never in E notation."""
    if x is None:
        return "-"
    if isinstance(x, float):
        if x == 0:
            return "0.00"
        return format(Decimal(f"{x:.{digits}g}"), "f") if x == x and abs(x) != float("inf") else str(x)
    return str(x)


@experiments.command("report")
@config_option
@click.argument("experiment_id")
@click.option("--charts", "charts", type=click.Path(file_okay=False), help="write PNG charts into this directory")
@json_option
def report(config_path: str, experiment_id: str, charts: str | None, as_json: bool) -> None:
    """Requests, errors, latency, cost and metrics per variant; the comparison; the bandit's allocation."""
    from ..prompts.report import report as build

    metrics = _metrics(config_path)
    with governance(config_path) as gov:
        rep = operate(gov, build, experiment_id, metrics)
    if as_json:
        _print_json(rep.model_dump(mode="json"))
    else:
        _table(rep)
    if charts:
        for path in write_charts(rep, Path(charts)):
            err.print(f"wrote {path}", highlight=False)


def _table(rep: Report) -> None:
    names = sorted({m for v in rep.variants for m in v["metrics"]})
    t = Table("variant", "requests", "errors", "p50 ms", "p95 ms", "cost/req", "cost", "share",
              *[f"{m} (95% CI)" for m in names], title=f"{rep.experiment_id} ({rep.status})")
    for v in rep.variants:
        cells = []
        for m in names:
            s = v["metrics"].get(m) or {}
            lo, hi = (s.get("ci95") or [None, None])
            cells.append(f"{_fmt(s.get('mean'))} [{_fmt(lo)}, {_fmt(hi)}] n={s.get('n', 0)}")
        t.add_row(v["name"], str(v["requests"]), str(v["errors"]), _fmt(v["latency_ms"]["p50"]),
                  _fmt(v["latency_ms"]["p95"]), _fmt(v["cost"]["per_request"]), _fmt(v["cost"]["total"]),
                  f"{rep.allocation.get(v['name'], 0):.0%}", *cells)
    out.print(t)
    c = rep.comparison
    if c is not None:
        verdict = f"{c['better']} is better" if c["better"] else "no significant difference"
        out.print(f"{c['metric']}: {c['b']} - {c['a']} = {c['difference']:.4g} (95% CI {c['ci95'][0]:.4g} .. "
                  f"{c['ci95'][1]:.4g}), {c['test']}, p = {c['p_value']:.4g}: {verdict}", highlight=False)


def write_charts(rep: Report, folder: Path) -> list[Path]:
    """Each metric over time per variant (running mean), and cost per request against quality."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        err.print("[red]error:[/red] charts need matplotlib: pip install 'switchyard[bench]'", highlight=False)
        sys.exit(2)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    metrics = sorted({m for v in rep.variants for m in v["metrics"]})
    for m in metrics:
        fig, ax = plt.subplots(figsize=(7, 4))
        for v in rep.variants:
            series = v["metrics"][m].get("series") or []
            total = 0.0
            ys = []
            for i, (_, y) in enumerate(series, 1):
                total += y
                ys.append(total / i)
            ax.plot(range(1, len(ys) + 1), ys, label=v["name"])
        ax.set(title=f"{m}: running mean per variant", xlabel="ratings", ylabel=m)
        ax.legend()
        path = folder / f"metric-{m}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    quality = (rep.comparison or {}).get("metric") or (metrics[0] if metrics else None)
    fig, ax = plt.subplots(figsize=(5, 4))
    for v in rep.variants:
        q = (v["metrics"].get(quality) or {}).get("mean") if quality else None
        cost = v["cost"]["per_request"]
        if q is not None and cost is not None:
            ax.scatter([cost], [q], s=60)
            ax.annotate(v["name"], (cost, q))
    ax.set(title="cost against quality", xlabel="cost per request (USD)", ylabel=quality or "quality")
    path = folder / "cost-quality.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)
    return written


@experiments.command("promote")
@config_option
@click.argument("experiment_id")
@click.argument("variant")
def promote(config_path: str, experiment_id: str, variant: str) -> None:
    """Move the experiment's label to VARIANT's version and stop the experiment (audited)."""
    with governance(config_path) as gov:
        p = operate(gov, exps.promote, experiment_id, Promote(variant=variant))
    out.print(f"{p.prompt}:{p.label} -> {p.version} (was {p.previous}); {experiment_id} stopped", highlight=False)


@experiments.command("stop")
@config_option
@click.argument("experiment_id")
def stop(config_path: str, experiment_id: str) -> None:
    """Stop an experiment by hand (audited)."""
    with governance(config_path) as gov:
        operate(gov, exps.stop, experiment_id)
    out.print(f"{experiment_id} stopped", highlight=False)
