"""``switchyard route explain``: the plan the router would make for a request, and why.

It reads the config and builds the catalog without opening any connection (providers are stood in for), so it
shows the plan of a gateway that has just started: every breaker closed, no latency measured yet.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ..catalog import Catalog
from ..messages import ChatRequest, ChatResponse, Chunk
from ..providers import Provider, Target
from ..routing import Router
from ..routing.explain import Explanation, explain

STRATEGY_WHY = {
    "weighted": "smooth weighted round robin: each deployment serves its weight's share, interleaved; the others "
                "follow in the order they would be picked next",
    "priority": "the configured order: the first healthy target serves, the rest are failovers",
    "least-busy": "fewest requests in flight at this gateway first; ties rotate",
    "lowest-latency": "lowest EWMA of time to first token first; unmeasured deployments first, and a share "
                      "(exploration) of requests tries another so none goes unmeasured",
    "lowest-cost": "cheapest estimate first: prompt tokens x input price + expected output (max_tokens, or 256) "
                   "x output price",
}


class _Offline(Provider):
    """A stand-in that never calls anything: explaining needs names and prices, not connections."""

    type = "offline"
    wire = "offline"

    async def chat(self, req: ChatRequest, target: Target) -> ChatResponse:
        raise NotImplementedError

    def stream(self, req: ChatRequest, target: Target) -> AsyncIterator[Chunk]:
        raise NotImplementedError


@click.group()
def route() -> None:
    """Inspect routes."""


@route.command("explain")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="the YAML config")
@click.option("--model", required=True, help="a route or deployment name, as a client would send it")
@click.option("--prompt-tokens", default=0, type=click.IntRange(min=0), help="the prompt's size")
@click.option("--max-tokens", default=None, type=click.IntRange(min=1), help="the request's max_tokens")
@click.option("--needs", default="", help="capabilities the request needs, comma-separated: tools,vision,json")
@click.option("--stream", is_flag=True, help="a streamed request (lowest-latency uses time to first token)")
@click.option("--embeddings", is_flag=True, help="an embeddings request")
@click.option("--only", default=None, help="deployments a stage narrowed the request to, comma-separated")
def explain_cmd(config_path: str, model: str, prompt_tokens: int, max_tokens: int | None, needs: str, stream: bool,
                embeddings: bool, only: str | None) -> None:
    """Print the plan the router would make for a request, and why."""
    from .main import _load

    cfg = _load(config_path)
    catalog = Catalog.from_config(cfg, lambda name, pc: _Offline(name, pc))
    router = Router(catalog, cfg)
    wanted = {n.strip() for n in needs.split(",") if n.strip()}
    allowed = frozenset(n.strip() for n in only.split(",") if n.strip()) if only is not None else None
    ex = explain(router, model, wanted, prompt_tokens, max_tokens, "embeddings" if embeddings else "chat", stream,
                 allowed, [f"--only {only}"] if only is not None else None)
    render(ex, Console(soft_wrap=True))
    if ex.error is not None:
        raise SystemExit(1)


def render(ex: Explanation, out: Console) -> None:
    what = f"route [bold]{ex.requested}[/bold]" if ex.route else f"deployment [bold]{ex.requested}[/bold]"
    if ex.error is not None and not ex.strategy:
        out.print(f"[red]{ex.error}[/red]")
        return
    out.print(f"{what} - strategy [cyan]{ex.strategy}[/cyan]" if ex.route else what)
    if ex.route:
        out.print(f"  {STRATEGY_WHY.get(ex.strategy, '')}", highlight=False)
    for why in ex.narrowed_by:
        out.print(f"  [yellow]narrowed: {why}[/yellow]", highlight=False)
    if ex.context_routed:
        out.print("  [yellow]the prompt is too large for every target: context_window_fallbacks serve[/yellow]")
    if ex.candidates:
        table = Table(title="plan (tried in this order; each failure moves on at once)", title_justify="left")
        labelled = any(c.zdr or c.tags for c in ex.candidates)
        for col in ("#", "deployment", "provider", "from", "why", *(("zdr/tags",) if labelled else ())):
            table.add_column(col)
        for i, c in enumerate(ex.candidates, 1):
            origin = c.group if c.group == ex.requested else f"fallback {c.group}"
            labels = (", ".join([*(["zdr"] if c.zdr else []), *c.tags]),) if labelled else ()
            table.add_row(str(i), c.deployment, c.provider, origin, c.why + (" (half-open probe)" if c.probe else ""),
                          *labels)
        out.print(table)
    if ex.skipped:
        table = Table(title="skipped before any call", title_justify="left")
        table.add_column("deployment")
        table.add_column("reason")
        for name, why in ex.skipped:
            table.add_row(name, why)
        out.print(table)
    if ex.error is not None:
        out.print(f"[red]no plan: {ex.error}[/red]", highlight=False)
    if ex.context_window_fallbacks:
        out.print(f"on a context-window error: {', '.join(ex.context_window_fallbacks)}")
    if ex.content_policy_fallbacks:
        out.print(f"on a content-policy error: {', '.join(ex.content_policy_fallbacks)}")
    _settings(ex.settings, out)


def _settings(settings: dict[str, Any], out: Console) -> None:
    r, t, h = settings["retries"], settings["timeouts"], settings["hedge"]
    out.print(f"retries: max {r['max']}, backoff {r['backoff_base_ms']:g}-{r['backoff_max_ms']:g} ms full jitter, "
              f"Retry-After up to {r['retry_after_cap_s']:g}s, budget {r['budget_ratio']:g}/request "
              f"+ {r['budget_min_per_s']:g}/s (burst {r['budget_burst']:g})", highlight=False)
    limits = ", ".join(f"{k.removesuffix('_s')} {v:g}s" for k, v in t.items() if v is not None)
    out.print(f"timeouts: {limits or 'the server request_timeout and the provider timeouts only'}", highlight=False)
    if h is not None:
        out.print(f"hedge: after p{h['after_percentile']:g} of recent latency (at least {h['min_delay_ms']:g} ms, "
                  f"once {h['min_samples']} samples exist), up to {h['max_extra']} extra", highlight=False)
    groups: dict[str, list[str]] = {}
    described: dict[str, str] = {}
    for name, b in settings["breakers"].items():
        key = repr(sorted(b.items()))
        groups.setdefault(key, []).append(name)
        described[key] = "disabled" if not b["enabled"] else (
            f"opens after {b['consecutive_failures']} failures in a row or {b['failure_rate']:.0%} of "
            f">= {b['min_requests']} in {b['window_s']:g}s; cooldown {b['cooldown_s']:g}s (doubling to "
            f"{b['cooldown_max_s']:g}s)")
    for key, names in groups.items():
        out.print(f"breaker ({', '.join(names)}): {described[key]}", highlight=False)
