"""A Responses API call against a chat completions call, through the whole gateway in process: the ASGI app as
``switchyard serve`` builds it (the shell, authentication, the stage chain, the protocol adapter, the renderer) to
the simulated provider, driven by direct ASGI calls (no sockets). Whole replies and streams; the Responses call
with nothing stored (``store: false``), stored, and continuing a stored chain (``previous_response_id``). Then the
load of a stored chain on SQLite from the store itself, from its cache and from the table.

    PYTHONPATH=src python -m benchmarks.responses_micro [-n 5000] [--repeat 5]

Prints CPU microseconds per request (the best of several alternating rounds) and the Responses/chat ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from switchyard.config import parse_config
from switchyard.server.factory import build

KEY = "sk-bench-user-0123456789"
MESSAGES = [{"role": "user", "content": "hello there"}]


def app(store: str) -> Any:
    cfg = parse_config({"master_key": "sk-bench-master-0123456789", "store": store,
                        "governance": {"enabled": False},
                        "keys": [{"key": KEY, "name": "bench", "logging": "metadata"}],
                        "providers": {"sim": {"type": "simulated", "output_tokens": 16}},
                        "deployments": [{"name": "sim", "provider": "sim"}]}, "<bench>", {})
    return build(cfg)


async def call(shell: Any, path: str, body: bytes) -> bytes:
    scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(b"authorization", f"Bearer {KEY}".encode()), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 4000), "scheme": "http", "http_version": "1.1"}
    sent = False
    out: list[bytes] = []
    status = 0
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            out.append(message.get("body", b""))
            if not message.get("more_body"):
                done.set()

    await shell(scope, receive, send)
    done.set()
    if status != 200:
        raise RuntimeError(f"{path}: HTTP {status}: {b''.join(out)[:300]!r}")
    return b"".join(out)


async def per_call(shell: Any, path: str, body: dict[str, Any], n: int, repeat: int) -> float:
    return (await paired(shell, [(path, body)], n, repeat))[0]


async def paired(shell: Any, calls: list[tuple[str, dict[str, Any]]], n: int, repeat: int) -> list[float]:
    """CPU microseconds per call of each (path, body), the best of ``repeat`` rounds; the rounds of the calls
    alternate, so that a machine busy with something else weighs on each of them alike."""
    bodies = [(path, orjson.dumps(body)) for path, body in calls]
    best = [float("inf")] * len(calls)
    for r in range(repeat + 1):
        for i, (path, data) in enumerate(bodies):
            gc.collect()
            t0 = time.process_time()
            for _ in range(n):
                await call(shell, path, data)
            if r:  # the first round warms up
                best[i] = min(best[i], (time.process_time() - t0) / n * 1e6)
    return best


async def chained(shell: Any, n: int, repeat: int) -> float:
    """A stored response continued again and again from the same stored first turn (the chain stays one long)."""
    first = orjson.loads(await call(shell, "/v1/responses", orjson.dumps({"model": "sim", "input": "hello there"})))
    body = {"model": "sim", "input": "and again", "previous_response_id": first["id"], "store": False}
    return await per_call(shell, "/v1/responses", body, n, repeat)


async def load_p99(n: int) -> tuple[float, float, float, float]:
    """p50 and p99 of loading a 3-turn stored chain from the cache, and from the SQLite table, in ms."""
    from switchyard.state.responses import ResponseStore, Stored

    with tempfile.TemporaryDirectory() as d:
        store = ResponseStore.open(f"sqlite:///{Path(d) / 'b.db'}")
        prev = None
        for i in range(n):
            for t in range(3):
                rid = f"resp_{i}_{t}"
                store.put(Stored(rid, "key:bench", None, time.time(), prev,
                                 [{"type": "message", "role": "user", "content": "hello there " * 20}],
                                 {"id": rid, "output": [{"type": "message", "role": "assistant",
                                                         "content": [{"type": "output_text", "text": "x " * 200}]}]}))
                prev = rid
            prev = None
        store.flush()
        hits = []
        for i in range(n):
            t0 = time.perf_counter()
            await store.chain(f"resp_{i}_2", "key:bench")
            hits.append((time.perf_counter() - t0) * 1000)
        misses = []
        for i in range(n):
            store.cache.clear()
            t0 = time.perf_counter()
            await store.chain(f"resp_{i}_2", "key:bench")
            misses.append((time.perf_counter() - t0) * 1000)
        store.close()
    q = statistics.quantiles
    return statistics.median(hits), q(hits, n=100)[98], statistics.median(misses), q(misses, n=100)[98]


async def main_async(n: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        shell = app(f"sqlite:///{Path(d) / 'gw.db'}")
        chat = {"model": "sim", "messages": MESSAGES}
        resp = {"model": "sim", "input": MESSAGES, "store": False}
        rows = [
            ("chat, whole", "/v1/chat/completions", chat),
            ("responses, whole", "/v1/responses", resp),
            ("chat, stream", "/v1/chat/completions", {**chat, "stream": True}),
            ("responses, stream", "/v1/responses", {**resp, "stream": True}),
            ("responses, stored", "/v1/responses", {**resp, "store": True}),
        ]
        got: dict[str, float] = {}
        for pair in (rows[:2], rows[2:4], rows[4:]):
            for (label, _, _), us in zip(pair, await paired(shell, [(p, b) for _, p, b in pair], n, repeat),
                                         strict=True):
                got[label] = us
                print(f"{label:34s} {us:8.1f} us/request")
        got["chained"] = await chained(shell, n, repeat)
        print(f"{'responses, previous_response_id':34s} {got['chained']:8.1f} us/request")
        print(f"responses/chat, whole:  {got['responses, whole'] / got['chat, whole']:.3f}")
        print(f"responses/chat, stream: {got['responses, stream'] / got['chat, stream']:.3f}")
        shell.state.responses.close()
    p50, p99, miss50, miss99 = await load_p99(2000)
    print(f"load a 3-turn chain (SQLite): cached p50 {p50:.3f} ms, p99 {p99:.3f} ms; "
          f"from the table p50 {miss50:.3f} ms, p99 {miss99:.3f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    asyncio.run(main_async(a.n, a.repeat))


if __name__ == "__main__":
    main()
