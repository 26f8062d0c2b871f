"""The cost of a managed prompt on the request path (``switchyard.prompts.stage``), in process: the Prompt stage's
``before`` for a chat request that names a prompt (label and compiled version cached: the steady state), against
the same request without ``prompt`` (one dict lookup). The budget is 0.1 ms (100 µs) per request.

    PYTHONPATH=src python -m benchmarks.prompts_micro [--n 20000] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from typing import Any

from switchyard.messages import ChatRequest, Message, TextPart
from switchyard.prompts.stage import PromptStage
from switchyard.prompts.template import check_spec, compile_version
from switchyard.stages import CallContext

SPEC = {"model": "sim", "parameters": {"temperature": 0.2, "max_tokens": 300},
        "variables": {"type": "object", "properties": {"customer": {"type": "string"}, "order": {"type": "string"},
                                                       "tone": {"enum": ["warm", "dry"]}},
                      "required": ["customer", "order"]},
        "messages": [{"role": "system", "content": "You are the support assistant of ACME. Be {{ tone | default("
                                                   "'warm') }}.\n{% if order %}The order is {{ order }}.{% endif %}"},
                     {"role": "user", "content": "Hello, I am {{ customer }}."}]}
BUDGET_US = 100.0


def stage() -> PromptStage:
    s = PromptStage(db=None, refresh_s=1e9)
    s._compiled[("", "support", 1)] = compile_version("support", 1, check_spec(SPEC))
    s._labels[("", "support", "production")] = (time.monotonic(), 1, None)
    s._experiments = {}
    s._experiments_at = time.monotonic()
    return s


def request(with_prompt: bool) -> ChatRequest:
    extra: dict[str, Any] = {"prompt": {"name": "support", "label": "production",
                                        "variables": {"customer": "Ada", "order": "A-1234"}}} if with_prompt else {}
    return ChatRequest(model="prompt" if with_prompt else "sim", wire="openai", extra=extra,
                       messages=[Message("user", [TextPart("where is my parcel?")])])


def per_request(s: PromptStage, with_prompt: bool, n: int, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat + 1):
        reqs = [request(with_prompt) for _ in range(n)]
        ctxs = [CallContext(f"req_{i}") for i in range(n)]
        gc.collect()
        t0 = time.perf_counter()
        for ctx, req in zip(ctxs, reqs, strict=True):
            ctx.request = req
            s.before(ctx)
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    s = stage()
    without = per_request(s, False, args.n)
    with_prompt = per_request(s, True, args.n)
    out = {"without_prompt_us": round(without, 3), "with_prompt_us": round(with_prompt, 3),
           "added_us": round(with_prompt - without, 3), "budget_us": BUDGET_US}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"prompt stage, no 'prompt' field: {without:.2f} µs/request")
        print(f"prompt stage, a managed prompt (cached version, rendered): {with_prompt:.2f} µs/request")
        verdict = "within" if with_prompt - without <= BUDGET_US else "OVER"
        print(f"added by a managed prompt: {with_prompt - without:.2f} µs ({verdict} the {BUDGET_US:.0f} µs budget)")


if __name__ == "__main__":
    main()
