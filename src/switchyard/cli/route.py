"""``switchyard route explain``: the plan the router would make for a request, and why.

It reads the config and builds the catalog without opening any connection (providers are stood in for), so it
shows the plan of a gateway that has just started: every breaker closed, no latency measured yet. With policy files
in the config, the deployments the policies forbid for the described caller (``--principal``, ``--data-class``...)
are narrowed out, each named with the policies that dropped it (:mod:`.route_policy`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ..catalog import Catalog
from ..config import default_config_path
from ..messages import ChatRequest, ChatResponse, Chunk, ImagePart, Message, ResponseFormat, Role, TextPart, Tool
from ..providers import Provider, Target
from ..routing import Router
from ..routing.explain import Explanation, explain
from ..tokens import estimate_prompt

STRATEGY_WHY = {
    "weighted": "smooth weighted round robin: each deployment serves its weight's share, interleaved; the others "
                "follow in the order they would be picked next",
    "priority": "the configured order: the first healthy target serves, the rest are failovers",
    "least-busy": "fewest requests in flight at this gateway first; ties rotate",
    "lowest-latency": "lowest EWMA of time to first token first; unmeasured deployments first, and a share "
                      "(exploration) of requests tries another so none goes unmeasured",
    "lowest-cost": "cheapest estimate first: prompt tokens x input price + expected output (max_tokens, or 256) "
                   "x output price",
    "auto": "highest score first: predicted quality for the task type (catalog tier vs the task's difficulty) "
            "minus the objective's weights times log10 of relative cost and log2 of relative latency",
    "cascade": "the steps in order, cheap first: a check keeps a step's answer or escalates to the next step",
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
@click.option("--config", "config_path", default=default_config_path, type=click.Path(dir_okay=False),
              help="the YAML config (default: $SWITCHYARD_CONFIG, else ./switchyard.yaml)")
@click.option("--model", required=True, help="a route or deployment name, as a client would send it")
@click.option("--prompt-tokens", default=0, type=click.IntRange(min=0), help="the prompt's size")
@click.option("--max-tokens", default=None, type=click.IntRange(min=1), help="the request's max_tokens")
@click.option("--needs", default="", help="capabilities the request needs, comma-separated: tools,vision,json")
@click.option("--stream", is_flag=True, help="a streamed request (lowest-latency uses time to first token)")
@click.option("--embeddings", is_flag=True, help="an embeddings request")
@click.option("--only", default=None, help="deployments a stage narrowed the request to, comma-separated")
@click.option("--prompt", default=None, help="the request's text (auto profiles it: task type, difficulty)")
@click.option("--objective", type=click.Choice(["cheapest", "balanced", "best"]), default=None,
              help="as the x-switchyard-objective header would (auto)")
@click.option("--principal", default=None, help='with policy files in the config: the caller, as in a `policy test` '
              'case, as JSON ({"key": "vk_1", "team": "interns", "data_class": "internal"}; default a key of no '
              'team or org)')
@click.option("--data-class", default=None, help="the class the caller asks for (x-switchyard-data-class)")
@click.option("--pii", default="", help="the PII types found in the request, comma-separated (context.pii)")
@click.option("--tools", default="", help="the tool names the request defines, comma-separated")
@click.option("--hour", default=None, type=click.IntRange(0, 23), help="0-23 (default: now, in policies.timezone)")
@click.option("--weekday", default=None, type=click.IntRange(1, 7), help="ISO: 1 = Monday ... 7 (default: now)")
@click.option("--json", "as_json", is_flag=True, help="print the explanation as JSON")
def explain_cmd(config_path: str, model: str, prompt_tokens: int, max_tokens: int | None, needs: str, stream: bool,
                embeddings: bool, only: str | None, prompt: str | None, objective: str | None, principal: str | None,
                data_class: str | None, pii: str, tools: str, hour: int | None, weekday: int | None,
                as_json: bool) -> None:
    """Print the plan the router would make for a request, and why."""
    from .main import _load

    cfg = _load(config_path)
    catalog = Catalog.from_config(cfg, lambda name, pc: _Offline(name, pc))
    router = Router(catalog, cfg)
    wanted = {n.strip() for n in needs.split(",") if n.strip()}
    allowed = frozenset(n.strip() for n in only.split(",") if n.strip()) if only is not None else None
    narrowed_by = [f"--only {only}"] if only is not None else []
    request = _request(model, prompt, wanted, max_tokens, stream) if prompt is not None else None
    if request is not None and not prompt_tokens:
        prompt_tokens = estimate_prompt(request)
    out = Console(soft_wrap=True, stderr=as_json)  # with --json, stdout holds only the JSON
    if cfg.policies.enabled:  # as the Policy stage narrows a call (Cedar loads only here)
        from .route_policy import narrowing

        pol = narrowing(cfg, config_path, router, router.resolve(model), embeddings=embeddings,
                        prompt_tokens=prompt_tokens, max_tokens=max_tokens, stream=stream, principal=principal,
                        data_class=data_class, pii=pii, tools=tools, hour=hour, weekday=weekday)
        if pol.denial is not None:
            out.print(f"[red]403 policy_denied: {pol.denial}[/red]", highlight=False)
            raise SystemExit(1)
        if pol.allowed is not None and pol.reason is not None:
            allowed = pol.allowed if allowed is None else allowed & pol.allowed
            narrowed_by.append(pol.reason)
        if pol.pii_mode is not None:
            out.print(f"PII mode asked for by the policies (@pii): [bold]{pol.pii_mode}[/bold]", highlight=False)
    ex = explain(router, model, wanted, prompt_tokens, max_tokens, "embeddings" if embeddings else "chat", stream,
                 allowed, narrowed_by or None, request, objective)
    if as_json:
        import dataclasses

        from .output import print_json

        print_json(dataclasses.asdict(ex))
    else:
        render(ex, out)
    if ex.error is not None:
        raise SystemExit(1)


def _request(model: str, prompt: str, needs: set[str], max_tokens: int | None, stream: bool) -> ChatRequest:
    """A request like a client's: the prompt, with an image or a tool when ``--needs`` asks for vision or tools."""
    parts: list[Any] = [TextPart(prompt)]
    if "vision" in needs:
        parts.append(ImagePart(url="https://example.com/image.png"))
    tools = [Tool("tool", parameters={"type": "object"})] if "tools" in needs else None
    fmt = ResponseFormat("json_object") if "json" in needs else None
    return ChatRequest(model, [Message(Role.USER, parts)], "openai", stream=stream, max_tokens=max_tokens,
                       tools=tools, response_format=fmt)


def _auto(ex: Explanation, out: Console) -> None:
    p, d = ex.profile, ex.decision
    if p is None or d is None:
        return
    rule = f", by rule ({p['rule']})" if p.get("rule") else ""
    out.print(f"profile: task [bold]{p['task']}[/bold]{rule}, difficulty {p['difficulty']}, {p['tokens']} tokens, "
              f"needs {', '.join(p['needs']) or 'nothing special'}"  # type: ignore[arg-type]
              + (f"; signals {', '.join(p['signals'])}" if p.get("signals") else ""), highlight=False)  # type: ignore[arg-type]
    w = d["weights"]
    out.print(f"objective: {d['objective']} (cost weight {w['cost']:g}, latency weight {w['latency']:g})",  # type: ignore[index]
              highlight=False)
    table = Table(title="candidates (auto)", title_justify="left")
    for col in ("deployment", "quality", "success", "est. cost", "latency", "score"):
        table.add_column(col)
    for c in d["candidates"]:  # type: ignore[attr-defined]
        lat = "unmeasured" if c["latency_ms"] is None else f"{c['latency_ms']:g} ms"
        table.add_row(c["deployment"], f"{c['quality']:g}" + (" (below floor)" if c["below_floor"] else ""),
                      f"{c['success']:.2f}", f"${c['cost']:.6f}", lat, f"{c['score']:.3f}")
    out.print(table)
    out.print(f"chosen: [bold]{d['chosen']}[/bold] - {d['why']}", highlight=False)


def render(ex: Explanation, out: Console) -> None:
    name = ex.alias.split(" -> ", 1)[1] if ex.alias else ex.requested
    what = f"route [bold]{name}[/bold]" if ex.route else f"deployment [bold]{name}[/bold]"
    if ex.alias:
        out.print(f"{ex.requested!r} matches the alias {ex.alias}", highlight=False)
    if ex.error is not None and not ex.strategy:
        out.print(f"[red]{ex.error}[/red]")
        return
    out.print(f"{what} - strategy [cyan]{ex.strategy}[/cyan]" if ex.route else what)
    if ex.route:
        out.print(f"  {STRATEGY_WHY.get(ex.strategy, '')}", highlight=False)
    for why in ex.narrowed_by:
        out.print(f"  [yellow]narrowed: {why}[/yellow]", highlight=False)
    _auto(ex, out)
    if ex.cascade:
        out.print("  steps: " + " -> ".join(ex.cascade), highlight=False)
    if ex.context_routed:
        out.print("  [yellow]the prompt is too large for every target: context_window_fallbacks serve[/yellow]")
    if ex.candidates:
        table = Table(title="plan (tried in this order; each failure moves on at once)", title_justify="left")
        labelled = any(c.zdr or c.tags for c in ex.candidates)
        for col in ("#", "deployment", "provider", "from", "why", *(("zdr/tags",) if labelled else ())):
            table.add_column(col)
        for i, c in enumerate(ex.candidates, 1):
            origin = c.group if c.group == name else f"fallback {c.group}"
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
