"""The semantic cache's cost on the request path, in process: the ``Cache`` stage's ``before`` (the lookup) on a
miss and on a hit, and its ``after`` (which only schedules the store), over a memory index holding other entries;
then a hit-rate replay over a paraphrase set (benchmarks/cache_paraphrases.py) at several thresholds.

    PYTHONPATH=src python benchmarks/cache_micro.py

A miss pays the request's keys (its shape and question digests) and, when its scope and shape have candidates,
the question's embedding and one matrix-vector product; a hit also decodes the stored answer.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from switchyard.cache import build_cache
from switchyard.config import parse_config
from switchyard.governance.auth import Principal
from switchyard.messages import ChatRequest, ChatResponse, Choice, FinishReason, Message, Role, TextPart, Usage
from switchyard.stages import CallContext, Outcome

try:
    from benchmarks.cache_paraphrases import SET
except ImportError:  # run as a script from benchmarks/
    from cache_paraphrases import SET  # type: ignore[no-redef]

USER = Principal(id="vk_bench", name="bench", org_id="org_bench", logging="metadata")


def stage(threshold: float = 0.9) -> Any:
    cfg = parse_config({"store": "sqlite:///:memory:", "providers": {"sim": {"type": "simulated"}},
                        "deployments": [{"name": "sim", "provider": "sim"}],
                        "cache": {"store": "memory", "threshold": threshold, "max_per_shape": 100_000}}, "<bench>", {})
    return build_cache(cfg)


def request(text: str, system: str = "You are a helpful assistant.") -> ChatRequest:
    return ChatRequest(model="sim", wire="openai.chat", temperature=0, max_tokens=256,
                       messages=[Message(Role.SYSTEM, [TextPart(system)]), Message(Role.USER, [TextPart(text)])])


def answer(text: str) -> ChatResponse:
    return ChatResponse("id", "sim", 0, [Choice(0, Message(Role.ASSISTANT, [TextPart(text)]), FinishReason.STOP)],
                        Usage(20, 60))


def call(req: ChatRequest, i: int) -> CallContext:
    return CallContext(request_id=f"req_{i}", principal=USER, request=req)


def store(st: Any, req: ChatRequest, text: str, i: int) -> None:
    c = call(req, i)
    assert st.before(c) is None
    st.after(c, Outcome("ok", 200, Usage(20, 60), 0.001, answer=answer(text)))


def percentiles(xs: list[float]) -> str:
    xs = sorted(xs)
    return f"p50 {statistics.median(xs) * 1e3:.3f} ms, p99 {xs[int(len(xs) * 0.99)] * 1e3:.3f} ms"


def timed(st: Any, reqs: list[ChatRequest], n: int) -> list[float]:
    out = []
    for i in range(n):
        c = call(reqs[i % len(reqs)], i)
        t = time.perf_counter()
        st.before(c)
        st.after(c, Outcome("error", 500, Usage(), 0.0))  # a miss's after that stores nothing
        out.append(time.perf_counter() - t)
    return out


async def latency(n: int, entries: int) -> None:
    st = stage()
    for i in range(entries):  # other entries of the same shape: the similarity search has work to do
        store(st, request(f"Question number {i} about topic {i * 7 % 13}?"), f"answer {i}", i)
    for i in range(200):
        store(st, request(f"Unrelated {i}", system=f"System {i}"), f"x {i}", 10_000 + i)
    await asyncio.sleep(0)  # the stores run (call_soon)
    await asyncio.sleep(0)
    hit_req = [request("Question number 3 about topic 8?")]
    miss_same_shape = [request(f"Something never asked, variant {i}") for i in range(50)]
    miss_new_shape = [request(f"Something never asked, variant {i}", system=f"New {i}") for i in range(50)]
    similar = [request("Question number 3 about topic 8")]
    timed(st, hit_req + miss_same_shape, 500)  # warm up
    print(f"index: {len(st.store.index)} entries, {entries} of the benchmark's shape")
    print(f"miss, no candidates of its shape (keys only):   {percentiles(timed(st, miss_new_shape, n))}")
    print(f"miss, {entries} candidates of its shape (+ embed):  {percentiles(timed(st, miss_same_shape, n))}")
    print(f"exact hit (decode the answer):                  {percentiles(timed(st, hit_req, n))}")
    print(f"similar hit (embed, search, decode):            {percentiles(timed(st, similar, n))}")


async def replay() -> None:
    print("\nhit-rate replay: 20 questions stored, 40 paraphrases and 20 near misses asked (same shape)")
    print("threshold  paraphrase hits  near-miss hits (wrong answers)")
    for threshold in (0.8, 0.85, 0.9, 0.95):
        st = stage(threshold)
        for i, (q, _, _) in enumerate(SET):
            store(st, request(q), q, i)
        await asyncio.sleep(0)
        hits = wrong = total_p = total_n = 0
        for i, (q, paras, nears) in enumerate(SET):
            for p in paras:
                total_p += 1
                got = st.before(call(request(p), 1000 + i))
                hits += isinstance(got, ChatResponse) and got.choices[0].message.text() == q
            for nm in nears:
                total_n += 1
                wrong += isinstance(st.before(call(request(nm), 2000 + i)), ChatResponse)
        print(f"{threshold:<9}  {hits}/{total_p} ({hits / total_p:.0%})       "
              f"{wrong}/{total_n} ({wrong / total_n:.0%})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=5000)
    ap.add_argument("--entries", type=int, default=1000)
    args = ap.parse_args()
    asyncio.run(latency(args.n, args.entries))
    asyncio.run(replay())


if __name__ == "__main__":
    main()
