"""What a conversation adds to a call: loading its history and storing the new turn, on SQLite and PostgreSQL, with
and without encryption at rest. The budget (issue 15) is 2 ms p99 for the two together.

    PYTHONPATH=src python benchmarks/state_micro.py [--pg postgresql://postgres@127.0.0.1:5432/test] [-n 1000]
                                                    [--runs 5]

Each operation is timed from the event loop, as the conversation stage pays it (the SQL runs on a worker thread):
``load`` of a conversation holding 20 to 40 messages, then ``append`` of a turn (a user message and a reply), in
one process with nothing else running. It prints p50, p99 and max in milliseconds per case. The PostgreSQL case
makes a throwaway database on the server at ``--pg`` and drops it afterwards (skipped when none answers). With
``--runs K`` every case runs K times, and the medians of the runs' p50 and p99 close the report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from switchyard.messages import Message, Role, TextPart
from switchyard.state.conversations import ConversationStore
from switchyard.store.db import create_engine_for, migrate

TTL = 30 * 86400.0
SCOPE = "org:bench"
CONVERSATIONS = 50


def turn(i: int) -> list[Message]:
    return [Message(Role.USER, [TextPart(f"question {i}: " + "lorem ipsum dolor sit amet " * 8)]),
            Message(Role.ASSISTANT, [TextPart(f"answer {i}: " + "consectetur adipiscing elit " * 12)])]


async def measure(store: ConversationStore, n: int) -> tuple[list[float], list[float], list[float]]:
    ids = []
    for _ in range(CONVERSATIONS):
        conv = await store.create(SCOPE, ttl=TTL)
        for i in range(10):  # 20 messages to start with
            await store.append(SCOPE, conv.id, turn(i), [None, "openai"], ttl=TTL)
        ids.append(conv.id)
    loads, appends, both = [], [], []
    for i in range(n):
        conv_id = ids[i % CONVERSATIONS]
        t0 = time.perf_counter()
        history = await store.load(SCOPE, conv_id)
        t1 = time.perf_counter()
        await store.append(SCOPE, conv_id, turn(i), [None, "openai"], ttl=TTL)
        t2 = time.perf_counter()
        assert history.messages
        if i >= n // 10:  # the first tenth warms up
            loads.append((t1 - t0) * 1000)
            appends.append((t2 - t1) * 1000)
            both.append((t2 - t0) * 1000)
    return loads, appends, both


def pct(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=1000)[int(q * 10) - 1] if len(xs) > 1 else xs[0]


Runs = dict[str, list[tuple[float, float]]]  # case and operation -> (p50, p99) of each run


def report(name: str, samples: tuple[list[float], list[float], list[float]], runs: Runs) -> None:
    for label, xs in zip(("load", "append", "load+append"), samples, strict=True):
        print(f"{name:28} {label:12} p50 {statistics.median(xs):6.3f} ms  p99 {pct(xs, 99):6.3f} ms  "
              f"max {max(xs):6.3f} ms")
        runs.setdefault(f"{name:28} {label:12}", []).append((statistics.median(xs), pct(xs, 99)))


def medians(runs: Runs) -> None:
    """The median over the runs of each run's p50 and p99: on a shared machine one run's p99 is often another
    process's time slice, and the median of several runs says what the code costs."""
    print(f"\nmedian of {len(next(iter(runs.values())))} runs (load average {os.getloadavg()[0]:.1f}):")
    for key, vals in runs.items():
        print(f"{key} p50 {statistics.median(v[0] for v in vals):6.3f} ms  "
              f"p99 {statistics.median(v[1] for v in vals):6.3f} ms  (p99 of the runs: "
              f"{', '.join(f'{v[1]:.2f}' for v in vals)})")


@contextlib.contextmanager
def pg_database(server: str) -> Iterator[str | None]:
    url = make_url(server).set(drivername="postgresql+psycopg")
    name = f"sy_bench_{secrets.token_hex(4)}"
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception as e:  # nothing listens: skip the case
        print(f"postgresql: skipped ({type(e).__name__})")
        admin.dispose()
        yield None
        return
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


async def case(name: str, url: str, key: str | None, n: int, runs: Runs) -> None:
    engine = create_engine_for(url)
    migrate(engine)
    engine.dispose()
    store = ConversationStore.open(url, encryption_key=key)  # as the gateway opens it
    try:
        report(name, await measure(store, n), runs)
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=1000, help="load+append pairs per case (default 1000)")
    ap.add_argument("--runs", type=int, default=1, help="runs of every case; more than one: their medians too")
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test", help="a PostgreSQL server URL")
    args = ap.parse_args()
    key = "bench-encryption-secret-0123456789abcdef"
    runs: Runs = {}
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            for enc in (None, key):
                label = "sqlite" + (" (encrypted)" if enc else "")
                asyncio.run(case(label, f"sqlite:///{tmp}/state-{bool(enc)}.db", enc, args.n, runs))
        for enc in (None, key):
            with pg_database(args.pg) as url:
                if url is not None:
                    asyncio.run(case("postgresql" + (" (encrypted)" if enc else ""), url, enc, args.n, runs))
    if args.runs > 1:
        medians(runs)


if __name__ == "__main__":
    main()
