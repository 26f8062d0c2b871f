"""The stage chain's cost per request, in process: N chat calls straight through ``Gateway`` (authenticate, then
``chat``) to the simulated provider, no HTTP, no network. Run it against two source trees to compare them:

    PYTHONPATH=src python benchmarks/stages_micro.py
    git archive <base> src | tar -x -C /tmp/base && PYTHONPATH=/tmp/base/src python benchmarks/stages_micro.py

It prints microseconds per request (the best of several rounds) for governance off with no recorder (the chain with
no optional stage), and with a recorder (the Record stage).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from typing import Any

from switchyard.config import parse_config
from switchyard.messages import ChatRequest, Message, Role, TextPart

KEY = "sk-bench-user-0123456789"


class Sink:
    """A recorder that keeps nothing."""

    def record(self, rec: Any) -> None:
        return None


def gateway(recorder: Any) -> Any:
    cfg = parse_config({"master_key": "sk-bench-master-0123456789", "store": "sqlite:///:memory:",
                        "governance": {"enabled": False}, "keys": [{"key": KEY, "name": "bench"}],
                        "providers": {"sim": {"type": "simulated", "output_tokens": 4}},
                        "deployments": [{"name": "sim", "provider": "sim"}]}, "<bench>", {})
    try:
        from switchyard.server.factory import build_gateway  # the stage chain
    except ImportError:  # a tree from before the app factory
        from switchyard.catalog import Catalog
        from switchyard.pipeline import Gateway

        return Gateway(cfg, Catalog.from_config(cfg), recorder)
    return build_gateway(cfg, recorder=recorder)


async def rounds(gw: Any, n: int, repeat: int) -> float:
    from switchyard.pipeline import CallContext

    req = ChatRequest(model="sim", messages=[Message(Role.USER, [TextPart("hello there")])], wire="openai")
    best = float("inf")
    for r in range(repeat + 1):
        gc.collect()
        t0 = time.perf_counter()
        for i in range(n):
            ctx = CallContext(f"req_{i}")
            await gw.authenticate(ctx, KEY)
            await gw.chat(ctx, req)
        if r:  # the first round warms up
            best = min(best, (time.perf_counter() - t0) / n * 1e6)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    for label, recorder in (("no optional stage", None), ("with a recorder", Sink())):
        us = asyncio.run(rounds(gateway(recorder), a.n, a.repeat))
        print(f"{label:20s} {us:8.2f} us/request")


if __name__ == "__main__":
    main()
