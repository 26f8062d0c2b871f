"""The ``auto`` strategy's decision cost, in process: ``Router.plan`` of an auto route over six catalog deployments,
the task profile included (the text's extraction, the WordLlama embedding, the centroids, the cue words, the
scores), for prompts of about 4,000 tokens of each task type and for short ones. No HTTP, no upstream.

    PYTHONPATH=src python -m benchmarks.auto_micro [--n 2000] [--json] [--core N] [--router ROUTER.npz]

With ``--router`` the route also has a learned router (``switchyard router train``) between o3 (strong) and
gpt-4o-mini (weak) with ``strong_share: 0.3``: the decision then also embeds the prompt for the router and scores it.

``make bench`` (``benchmarks/run.py``) runs it with ``--json`` on the gateway's core and reports it in
docs/benchmarks.md.

It prints, per prompt kind, the p50, p99 and max of one decision in microseconds of wall time, the p50 and p99 of
its CPU time (the thread's: on a shared machine the wall-clock tail is other processes' time slices), and the
embedding alone. Each call's prompt holds a word never seen before (a ticket number), so that the embedder's
cache of words (:mod:`switchyard.routing.auto.wordcache`) works as on real traffic, not on one text repeated. The
issue's target: a decision costs at most 1 ms p99 for a 4,000-token prompt, embedding
included.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import time
from typing import Any

from switchyard.catalog import Catalog
from switchyard.config import parse_config
from switchyard.messages import ChatRequest, Message, Role, TextPart
from switchyard.routing import Router
from switchyard.tokens import estimate_prompt

DEPLOYMENTS = ["gpt-4o-mini", "o3", "gpt-4.1-nano", "claude-sonnet-4", "gemini-2.5-flash", "deepseek-chat"]

FILLER = {
    "code": "def handler(event, context):\n    rows = load(event['path'])\n    return [r for r in rows if r.ok]\n",
    "math": "Let f(x) = x^3 - 3x + 1. We consider the integral of f over [0, 2] and the roots of f. ",
    "summarization": "The committee met on Tuesday to discuss the budget, the hiring plan and the roadmap. ",
    "chat": "I was thinking about what to cook tonight and wondered whether pasta or rice would be better. ",
    "choice": "The survey of 1820 records the mills, the canal and the three bridges that the town then had. ",
}
ASK = {
    "code": "Refactor the code above to stream the rows and add tests for the edge cases.",
    "math": "Prove that f has exactly three real roots and evaluate the integral step by step.",
    "summarization": "Summarize the meeting notes above in five bullet points.",
    "chat": "What do you think?",
    # a multiple-choice question: the learned router reads its options (how alike they are)
    "choice": "Which of these did the survey record?\nA. two mills\nB. the canal\nC. four bridges\nD. a railway\n"
              "Answer:",
}


def router(learned: str | None = None) -> Router:
    route: dict[str, Any] = {"targets": DEPLOYMENTS, "strategy": "auto"}
    if learned is not None:
        route.update(router=learned, strong="o3", weak="gpt-4o-mini", strong_share=0.3)
    cfg = parse_config({"providers": {"p": {"type": "simulated"}},
                        "deployments": [{"name": m, "provider": "p", "catalog": m} for m in DEPLOYMENTS],
                        "routes": {"smart": route}}, "<bench>", {})
    return Router(Catalog.from_config(cfg), cfg)


def request(kind: str, tokens: int, ticket: int | None = None) -> ChatRequest:
    """A prompt of about ``tokens`` tokens of ``kind``; ``ticket`` adds a word never seen before (the embedder keeps
    a cache of words: a real prompt is mostly known words and a few new ones, never the same text over and over)."""
    filler = FILLER[kind]
    ask = ASK[kind] if ticket is None else f"{ASK[kind]} (ticket {ticket:08x})"
    text = (filler * max(1, tokens * 4 // len(filler)))[: tokens * 4] + "\n\n" + ask if tokens else ask
    return ChatRequest(model="smart", messages=[Message(Role.SYSTEM, [TextPart("You are a helpful assistant.")]),
                                                Message(Role.USER, [TextPart(text)])], wire="openai")


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    ap.add_argument("--core", type=int, default=None, help="pin to this CPU core")
    ap.add_argument("--router", default=None, help="a learned router file for the route (strong o3, weak mini)")
    args = ap.parse_args()
    if args.core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})
    out: dict[str, Any] = {"n": args.n, "rows": []}
    say = (lambda *a: None) if args.json else print
    r = router(args.router)
    t0 = time.perf_counter()
    r.plan("smart", set(), 10, None, request=request("chat", 0))  # loads the embedder and the centroids
    out["first_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    say(f"first decision (loads the embedder and the seed centroids): {out['first_ms']:.0f} ms")
    from switchyard.routing.auto.embedder import default_embedder
    from switchyard.routing.auto.profile import request_text

    emb = default_embedder()
    say(f"{'prompt':<22}{'tokens':>8}{'p50 us':>10}{'p99 us':>10}{'max us':>10}{'cpu p50':>10}{'cpu p99':>10}"
        "   chosen (task, difficulty)")
    for kind in FILLER:
        for tokens in (0, 4000):
            req = request(kind, tokens)
            n_tokens = estimate_prompt(req)
            times: list[float] = []
            cpu: list[float] = []
            gc.collect()
            gc.disable()
            plan = None
            tickets = random.Random(f"{kind}{tokens}").sample(range(16 ** 8), args.n)
            for i in range(args.n):
                req = request(kind, tokens, tickets[i])
                c = time.thread_time_ns()
                t = time.perf_counter()
                plan = r.plan("smart", req.needs(), n_tokens, None, request=req)
                times.append((time.perf_counter() - t) * 1e6)
                cpu.append((time.thread_time_ns() - c) / 1e3)
            gc.enable()
            assert plan is not None and plan.decision is not None
            name = f"{kind}{' (4k)' if tokens else ' (short)'}"
            dec = plan.decision
            out["rows"].append({"prompt": name, "tokens": n_tokens, "p50_us": pct(times, 0.5),
                                "p99_us": pct(times, 0.99), "max_us": max(times), "cpu_p50_us": pct(cpu, 0.5),
                                "cpu_p99_us": pct(cpu, 0.99), "chosen": dec.chosen, "task": dec.profile.task,
                                "difficulty": round(dec.profile.difficulty, 2)})
            say(f"{name:<22}{n_tokens:>8}{pct(times, 0.5):>10.0f}{pct(times, 0.99):>10.0f}{max(times):>10.0f}"
                f"{pct(cpu, 0.5):>10.0f}{pct(cpu, 0.99):>10.0f}   "
                f"{dec.chosen} ({dec.profile.task}, {dec.profile.difficulty:.2f})")
    tickets = random.Random("embedding").sample(range(16 ** 8), args.n)
    times, cpu = [], []
    for i in range(args.n):
        text = request_text(request("code", 4000, tickets[i]))
        c = time.thread_time_ns()
        t = time.perf_counter()
        emb.embed([text])
        times.append((time.perf_counter() - t) * 1e6)
        cpu.append((time.thread_time_ns() - c) / 1e3)
    out["embedding"] = {"p50_us": pct(times, 0.5), "p99_us": pct(times, 0.99), "cpu_p50_us": pct(cpu, 0.5),
                        "cpu_p99_us": pct(cpu, 0.99)}
    say(f"{'embedding alone (4k)':<22}{'':>8}{pct(times, 0.5):>10.0f}{pct(times, 0.99):>10.0f}{max(times):>10.0f}"
        f"{pct(cpu, 0.5):>10.0f}{pct(cpu, 0.99):>10.0f}")
    if args.json:
        import orjson

        sys.stdout.write(orjson.dumps(out).decode() + "\n")


if __name__ == "__main__":
    main()
