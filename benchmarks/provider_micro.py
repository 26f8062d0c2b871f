"""CPU per provider call, in-process: the OpenAI provider alone, whole replies and 16-chunk streams.

    python -m benchmarks.provider_micro [--calls 3000] [--interval-ms 0]

Two ways: over loopback to :mod:`benchmarks.fake_upstream` in another process (the provider, the transport seam and
the lean HTTP client; the upstream's CPU is not counted), and through the in-memory ``MockTransport`` (the provider
and the seam alone, no sockets). Each figure is the median of five rounds of ``process_time`` per call. A quick
check that a change to ``switchyard.providers`` costs nothing: run it on both sides of the change.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

from switchyard.config import OpenAIProviderConfig
from switchyard.messages import WIRE_OPENAI_CHAT, ChatRequest, Message, Role, TextPart
from switchyard.providers.base import Target
from switchyard.providers.openai import OpenAIProvider
from switchyard.providers.transport import MockResponse, MockTransport, Request

from .fake_upstream import Settings, chat

REPO = Path(__file__).resolve().parent.parent
TARGET = Target("bench", "gpt-4o-mini")


def _requests() -> tuple[ChatRequest, ChatRequest]:
    messages = [Message(Role.USER, [TextPart("hello there")])]
    return (ChatRequest(model="bench", wire=WIRE_OPENAI_CHAT, messages=messages),
            ChatRequest(model="bench", wire=WIRE_OPENAI_CHAT, stream=True, messages=messages))


async def _per_call(fn: Callable[[], Awaitable[None]], calls: int) -> float:
    for _ in range(max(50, calls // 10)):
        await fn()
    rounds = []
    for _ in range(5):
        start = time.process_time()
        for _ in range(calls // 5):
            await fn()
        rounds.append((time.process_time() - start) / (calls // 5) * 1e6)
    return sorted(rounds)[2]


async def _measure(provider: OpenAIProvider, calls: int, label: str) -> None:
    whole, streamed = _requests()

    async def one_chat() -> None:
        await provider.chat(whole, TARGET)

    async def one_stream() -> None:
        async for _ in provider.stream(streamed, TARGET):
            pass

    print(f"{label}: chat {await _per_call(one_chat, calls):.1f} us, "
          f"16-chunk stream {await _per_call(one_stream, calls):.1f} us CPU per call")
    await provider.aclose()


def _in_memory() -> OpenAIProvider:
    settings = Settings()

    def handler(req: Request) -> MockResponse:
        reply = chat(req.json(), settings)
        if req.streamed:
            return MockResponse(reply.status, {"content-type": "text/event-stream"}, chunks=list(reply.frames or []))
        return MockResponse(reply.status, {"content-type": "application/json"}, body=reply.body)

    return OpenAIProvider("bench", OpenAIProviderConfig(type="openai", api_key="k"), MockTransport(handler))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.provider_micro", description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--interval-ms", type=float, default=0.0, help="between the upstream's stream chunks")
    ap.add_argument("--port", type=int, default=18931)
    args = ap.parse_args(argv)
    upstream = subprocess.Popen([sys.executable, "-m", "benchmarks.fake_upstream", "--port", str(args.port),
                                 "--chunks", "16", "--chunk-interval-ms", str(args.interval_ms)], cwd=REPO)
    try:
        time.sleep(1.5)
        loopback = OpenAIProvider("bench", OpenAIProviderConfig(
            type="openai", base_url=f"http://127.0.0.1:{args.port}/v1", api_key="k"))
        uvloop.run(_measure(loopback, args.calls, "loopback"))
        uvloop.run(_measure(_in_memory(), args.calls, "in memory"))
    finally:
        upstream.terminate()
        upstream.wait()


if __name__ == "__main__":
    main()
