"""The policy engine's cost per decision: 50 policies over 10 candidate deployments (issue 13: p99 <= 300 us).

    PYTHONPATH=src python -m benchmarks.policy_micro

Prints p50/p99 microseconds for a warm decision cache (requests that agree on what the policies read) and for a
cold one (every decision goes to Cedar: ``cached=False``).
"""

from __future__ import annotations

import random
import time
from decimal import Decimal

from switchyard.policy import PolicyEngine, Resource, Subject, base_context, parse_policies


def policies(n: int = 50) -> str:
    out = []
    for i in range(n):
        k = i % 5
        if k == 0:
            out.append(f'forbid(principal, action, resource) when {{ context.data_class == "c{i}" && '
                       f'resource.region != "au" }};')
        elif k == 1:
            out.append(f'forbid(principal in Switchyard::Team::"t{i}", action, resource) '
                       f'unless {{ resource.tags.contains("small") }};')
        elif k == 2:
            out.append(f'forbid(principal, action, resource) when {{ context.estimated_cost_usd.greaterThan('
                       f'decimal("{i}.0")) }};')
        elif k == 3:
            out.append(f'forbid(principal, action == Switchyard::Action::"tool_call", resource) '
                       f'when {{ context.hour < {i % 9} }};')
        else:
            out.append(f'permit(principal, action, resource) when {{ principal.roles.contains("r{i}") }};')
    return "\n".join(out)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1e6


def main() -> None:
    rng = random.Random(1)
    eng = PolicyEngine(parse_policies(policies(), "bench.cedar"))
    deps = [Resource(f"d{i}", provider="p", region=rng.choice(["au", "us"]), zdr=i % 2 == 0,
                     tags=frozenset({"small"} if i % 3 == 0 else set())) for i in range(10)]
    subjects = [Subject(f"k{i}", org="o", team=f"t{i % 7}", roles=frozenset({f"r{i % 11}"})) for i in range(20)]
    costs = [{d.name: Decimal(f"{c}.5000") for d in deps} for c in range(3)]
    ctxs = [base_context(data_class=dc, hour=h) for dc in ("public", "confidential") for h in (9, 14)]
    for label, cached in (("warm cache", True), ("cold (Cedar every time)", False)):
        times: list[float] = []
        for i in range(3000):
            s, ctx, c = subjects[i % 20], ctxs[i % 4], costs[i % 3]
            t = time.perf_counter()
            eng.decide(s, "chat", deps, ctx, c, cached=cached)
            times.append(time.perf_counter() - t)
        times = times[500:]
        print(f"50 policies x 10 deployments, {label}: p50 {pct(times, 0.5):.0f} us, p99 {pct(times, 0.99):.0f} us")


if __name__ == "__main__":
    main()
