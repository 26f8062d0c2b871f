"""Charts as inline SVG, drawn on the server: no chart library, no script, nothing for the CSP to allow.

Each function returns markup that is safe to put in a page (every label is escaped here). Colours come from the
stylesheet's palette (``class="c0"`` .. ``"c7"``), so the charts follow the page's light or dark scheme; each bar
carries a ``<title>``, which browsers show on hover.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from decimal import Decimal

from markupsafe import Markup, escape

PALETTE = 8  # classes c0..c7 in console.css; the last one is also "other"


def usd(value: float | Decimal | str | None) -> str:
    """Dollars: cents for a dollar or more, four significant figures below (a call costs fractions of a cent)."""
    if value is None:
        return "—"
    v = float(value)
    if v == 0:
        return "$0.00"
    if abs(v) >= 1:
        return f"${v:,.2f}"
    text = f"{v:.{max(2, 3 - math.floor(math.log10(abs(v))))}f}"
    whole, _, frac = text.partition(".")
    return f"${whole}.{frac.rstrip('0').ljust(2, '0')}"


def num(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def when(value: dt.datetime | str | None) -> str:
    """A UTC time, short: ``2025-06-01 14:03:07``."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value.replace("T", " ")[:19]
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _nice_max(v: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above ``v``."""
    if v <= 0:
        return 1.0
    p = 10.0 ** math.floor(math.log10(v))
    return float(next(m * p for m in (1, 2, 2.5, 5, 10) if m * p >= v * 0.999999))


def stacked_bars(xs: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *, title: str,
                 width: int = 760, height: int = 240, money: bool = True) -> Markup:
    """One bar per ``xs`` entry, stacked from ``series`` (name, one value per x), with axes and a legend."""
    left, right, top, bottom = 64, 8, 10, 26
    legend_rows = math.ceil(len(series) / 4) if series else 0
    total_h = height + legend_rows * 18
    plot_w, plot_h = width - left - right, height - top - bottom
    sums = [sum(s[1][i] for s in series) for i in range(len(xs))]
    top_v = _nice_max(max(sums, default=0.0))
    fmt = usd if money else (lambda v: num(v))
    out = [f'<svg class="chart" viewBox="0 0 {width} {total_h}" width="{width}" height="{total_h}" role="img" '
           f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">', f"<title>{escape(title)}</title>"]
    for i in range(5):  # grid lines and y labels
        y = top + plot_h - plot_h * i / 4
        out.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                   f"{escape(fmt(top_v * i / 4))}</text>")
    n = max(len(xs), 1)
    slot = plot_w / n
    bar = max(slot * 0.72, 1.0)
    every = max(1, math.ceil(n / 12))  # at most about a dozen x labels
    for i, x in enumerate(xs):
        x0 = left + slot * i + (slot - bar) / 2
        base = float(top + plot_h)
        for k, (name, values) in enumerate(series):
            v = values[i]
            if v <= 0:
                continue
            h = plot_h * v / top_v
            base -= h
            out.append(f'<rect class="c{min(k, PALETTE - 1)}" x="{x0:.1f}" y="{base:.1f}" width="{bar:.1f}" '
                       f'height="{max(h, 0.5):.1f}"><title>{escape(name)} · {escape(x)}: {escape(fmt(v))}'
                       f"</title></rect>")
        if i % every == 0:
            out.append(f'<text class="axis" x="{x0 + bar / 2:.1f}" y="{height - 8}" text-anchor="middle">'
                       f"{escape(x)}</text>")
    if not series or not any(sums):
        out.append(f'<text class="empty" x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" '
                   f'text-anchor="middle">nothing in this range</text>')
    for k, (name, _values) in enumerate(series):  # the legend, four to a row
        lx, ly = left + (k % 4) * (plot_w / 4), height + 4 + (k // 4) * 18
        label = name if len(name) <= 28 else name[:27] + "…"
        out.append(f'<rect class="c{min(k, PALETTE - 1)}" x="{lx:.1f}" y="{ly:.1f}" width="10" height="10"/>'
                   f'<text class="legend" x="{lx + 14:.1f}" y="{ly + 9:.1f}">{escape(label)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def budget_bar(spent: float, held: float, limit: float | None, *, width: int = 220) -> Markup:
    """Spent, then held, against the limit (no limit: nothing to fill)."""
    h = 12
    out = [f'<svg class="meter" viewBox="0 0 {width} {h}" width="{width}" height="{h}" role="img" '
           f'xmlns="http://www.w3.org/2000/svg"><rect class="track" x="0" y="0" width="{width}" height="{h}" rx="3"/>']
    if limit and limit > 0:
        s = min(spent / limit, 1.0) * width
        held_w = min(held / limit, 1.0) * width
        held_w = min(held_w, width - s)
        over = spent + held >= limit
        out.append(f'<rect class="{"spent over" if over else "spent"}" x="0" y="0" width="{s:.1f}" height="{h}" '
                   f'rx="3"><title>spent {escape(usd(spent))}</title></rect>')
        if held_w > 0:
            out.append(f'<rect class="held" x="{s:.1f}" y="0" width="{held_w:.1f}" height="{h}">'
                       f"<title>held {escape(usd(held))}</title></rect>")
    out.append("</svg>")
    return Markup("".join(out))
