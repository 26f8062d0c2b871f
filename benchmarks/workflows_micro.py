"""Workflows on DBOS, in process: the overhead per step (DBOS's checkpoint and the progress event included), and
the throughput of many small workflows, on SQLite and on PostgreSQL.

    PYTHONPATH=src python -m benchmarks.workflows_micro [--runs 1000] [--pg postgresql://postgres@127.0.0.1:5432/test]

On PostgreSQL the benchmark creates a database of its own on the ``--pg`` server (``sy_bench_<hex>``) for DBOS's
tables and drops it afterwards; the case is skipped (and says so) when nothing listens there. ``--pg ''`` skips it.

* overhead per step: a run of N transform steps, timed end to end, less the same steps' work done directly
  (``steps.execute`` without DBOS), divided by N; and a model step on a simulated deployment (no latency), through
  the workflow and through ``gateway.chat`` directly.
* throughput: ``--runs`` workflows of two steps (a transform and a simulated model call), all started at once,
  until every one has ended.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from typing import Any

import yaml

from switchyard.config import parse_config
from switchyard.governance.auth import Principal
from switchyard.server.factory import build_gateway

USER = Principal(id="key:bench", name="bench", logging="none")

CHAIN = 20


def _config(tmp: str, database: str) -> Any:
    flows = {
        "chain": {"name": "chain", "steps": [
            {"id": f"s{i}", "type": "transform", "needs": [f"s{i - 1}"] if i else [],
             "jmespath": f"steps.s{i - 1}" if i else "input.x"} for i in range(CHAIN)]},
        "model1": {"name": "model1", "steps": [
            {"id": "ask", "type": "model", "model": "sim", "messages": [{"role": "user", "content": "hi"}]}]},
        "small": {"name": "small", "steps": [
            {"id": "t", "type": "transform", "template": "q {{ input.x }}"},
            {"id": "ask", "type": "model", "model": "sim", "needs": ["t"],
             "messages": [{"role": "user", "content": "{{ steps.t }}"}]}]},
    }
    files = []
    for name, wf in flows.items():
        path = os.path.join(tmp, f"{name}.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(wf, f)
        files.append(path)
    return parse_config({"store": "sqlite:///:memory:", "providers": {"sim": {"type": "simulated", "output_tokens": 4}},
                         "deployments": [{"name": "sim", "provider": "sim"}],
                         "workflows": {"files": files, "database": database, "max_steps": 10_000,
                                       "pool_size": 40}}, "<bench>", {})


async def _run(name: str, value: Any, registry: Any) -> dict[str, Any]:
    from switchyard.workflows import runner

    wf, source = await registry.get(name, USER)
    run_id = runner.run_id_for(USER, None)
    handle = await runner.start_run(wf, source, value, USER, run_id, registry.config)
    result: dict[str, Any] = await handle.get_result()
    assert result["status"] == "completed", result
    return result


async def _direct_chain(registry: Any) -> float:
    from switchyard.workflows.steps import Env, execute

    wf, _ = await registry.get("chain", USER)
    env = Env(registry.gateway, registry.config, USER, "direct", time.time() + 60)
    t = time.perf_counter()
    outputs: dict[str, Any] = {}
    for s in wf.order():
        r = await execute(env, s.id, s, {"input": {"x": 1}, "steps": outputs}, None)
        outputs[s.id] = r["output"]
    return time.perf_counter() - t


async def _direct_model(gateway: Any) -> float:
    from switchyard.messages import ChatRequest, Message, Role, TextPart
    from switchyard.stages import CallContext

    t = time.perf_counter()
    ctx = CallContext(request_id="bench", principal=USER)
    req = ChatRequest(model="sim", wire="openai.chat", messages=[Message(Role.USER, [TextPart("hi")])])
    await gateway.chat(ctx, req)
    return time.perf_counter() - t


async def bench(database: str, runs: int, repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        gateway = build_gateway(_config(tmp, database))
        await gateway.start()
        registry = gateway.workflows
        try:
            for _ in range(3):  # warm up: imports, pools, the first DBOS writes
                await _run("chain", {"x": 1}, registry)
                await _run("model1", {}, registry)
            chain, direct, model, plain = [], [], [], []
            for _ in range(repeat):
                t = time.perf_counter()
                await _run("chain", {"x": 1}, registry)
                chain.append(time.perf_counter() - t)
                direct.append(await _direct_chain(registry))
                t = time.perf_counter()
                await _run("model1", {}, registry)
                model.append(time.perf_counter() - t)
                plain.append(await _direct_model(gateway))
            per_step = (statistics.median(chain) - statistics.median(direct)) / CHAIN
            t = time.perf_counter()
            await asyncio.gather(*(_run("small", {"x": i}, registry) for i in range(runs)))
            wall = time.perf_counter() - t
        finally:
            await gateway.aclose()
    return {"step_overhead_ms": per_step * 1000, "chain_ms": statistics.median(chain) * 1000,
            "model_run_ms": statistics.median(model) * 1000, "model_direct_ms": statistics.median(plain) * 1000,
            "runs": runs, "wall_s": wall, "runs_per_s": runs / wall}


def report(label: str, r: dict[str, float]) -> None:
    print(f"{label}:")
    print(f"  overhead per step (DBOS checkpoint + progress event): {r['step_overhead_ms']:.2f} ms "
          f"({CHAIN} transform steps: {r['chain_ms']:.1f} ms a run)")
    print(f"  one model step on a simulated deployment: {r['model_run_ms']:.2f} ms as a workflow run, "
          f"{r['model_direct_ms']:.2f} ms as a direct gateway.chat")
    print(f"  {int(r['runs'])} small workflows (2 steps each) started at once: {r['wall_s']:.2f} s, "
          f"{r['runs_per_s']:.0f} runs/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test",
                    help="a PostgreSQL server: the benchmark creates (and drops) a database of its own there; '' "
                         "skips the PostgreSQL case")
    args = ap.parse_args()
    print("(in process, on this machine's CPU and disk; numbers from a shared or busy machine vary run to run)")
    with tempfile.TemporaryDirectory() as tmp:
        report("SQLite", asyncio.run(bench(f"sqlite:///{tmp}/wf.sqlite", args.runs, args.repeat)))
    if args.pg:
        from benchmarks.state_micro import pg_database  # a throwaway database, dropped afterwards

        with pg_database(args.pg) as url:
            if url is not None:
                report("PostgreSQL", asyncio.run(bench(url, args.runs, args.repeat)))


if __name__ == "__main__":
    main()
