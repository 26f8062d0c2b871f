"""The worker base: interval, back-off with jitter, urgency (wake) and stop with a drain, on an injected clock and
sleep (nothing here waits for real time)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from switchyard.worker import Worker


class FakeTime:
    """A clock and a sleep that only move when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._due: list[tuple[float, asyncio.Future[None]]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        fut = asyncio.get_running_loop().create_future()
        self._due.append((self.now + delay, fut))
        await fut

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for due, fut in list(self._due):
            if due <= self.now and not fut.done():
                fut.set_result(None)
        self._due = [(d, f) for d, f in self._due if not f.done()]


async def settle(cond: Callable[[], bool], turns: int = 1000) -> None:
    """Let the event loop run until ``cond`` holds (a bounded number of turns, no wall clock)."""
    for _ in range(turns):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


class Script:
    """A step whose outcomes the test decides: True, False, or an exception."""

    def __init__(self, *outcomes: bool | Exception) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self) -> bool:
        self.calls += 1
        out = self.outcomes.pop(0) if self.outcomes else True
        if isinstance(out, Exception):
            raise out
        return out


async def test_it_steps_every_interval_and_backs_off_exponentially_with_jitter() -> None:
    t = FakeTime()
    step = Script(True, False, RuntimeError("boom"), False, False, False, True)
    w = Worker("test", step, interval=5.0, backoff_initial=1.0, backoff_max=6.0, jitter=0.5, clock=t.clock,
               sleep=t.sleep, rand=lambda: 0.5)
    w.start()
    for expected_calls in range(1, 8):
        await settle(lambda: len(t.sleeps) == expected_calls)  # noqa: B023
        t.advance(t.sleeps[-1])
        await settle(lambda: step.calls == expected_calls)  # noqa: B023
    await settle(lambda: len(t.sleeps) == 8)
    # interval; then 1, 2, 4, 8 -> 6 (the cap) after failures, less a quarter (jitter 0.5 x rand 0.5); then interval
    assert t.sleeps == [5.0, 5.0, 0.75, 1.5, 3.0, 4.5, 4.5, 5.0]
    assert w.failures == 0 and w.steps == 7
    await w.stop()
    assert not w.running


async def test_wake_runs_the_next_step_at_once() -> None:
    t = FakeTime()
    step = Script()
    w = Worker("test", step, interval=3600.0, clock=t.clock, sleep=t.sleep)
    w.start()
    await settle(lambda: len(t.sleeps) == 1)
    w.wake()
    await settle(lambda: step.calls == 1)
    assert t.now == 0.0  # no time passed: urgency, not the interval
    await w.stop()


async def test_a_worker_without_interval_only_runs_when_woken() -> None:
    t = FakeTime()
    step = Script()
    w = Worker("test", step, interval=None, clock=t.clock, sleep=t.sleep)
    w.start()
    for _ in range(50):
        await asyncio.sleep(0)
    assert step.calls == 0 and t.sleeps == []
    w.wake()
    await settle(lambda: step.calls == 1)
    await w.stop(grace=1.0)  # a last step on the way out
    assert step.calls == 2


async def test_stop_runs_a_last_step_then_drains_with_back_off_until_done() -> None:
    t = FakeTime()
    step = Script()
    drain = Script(False, False, True)
    w = Worker("test", step, interval=10.0, backoff_initial=1.0, backoff_max=8.0, clock=t.clock, sleep=t.sleep)
    w.start()
    await settle(lambda: len(t.sleeps) == 1)
    stopping = asyncio.ensure_future(w.stop(grace=30.0, drain=drain))
    await settle(lambda: step.calls == 1 and drain.calls == 1)
    for n in (2, 3):
        await settle(lambda: len(t.sleeps) == n)  # noqa: B023
        t.advance(t.sleeps[-1])
        await settle(lambda: drain.calls == n)  # noqa: B023
    assert await stopping is True
    assert t.sleeps[1:] == [1.0, 2.0] and not w.running


async def test_stop_gives_up_on_the_drain_after_grace() -> None:
    t = FakeTime()
    drain = Script(*([False] * 100))
    w = Worker("test", Script(), interval=10.0, backoff_initial=1.0, backoff_max=1.0, clock=t.clock, sleep=t.sleep)
    stopping = asyncio.ensure_future(w.stop(grace=3.0, drain=drain))  # never started: only the drain
    for i in range(1, 4):
        await settle(lambda: len(t.sleeps) == i)  # noqa: B023
        t.advance(t.sleeps[-1])
    assert await stopping is False
    assert drain.calls == 4 and t.now == 3.0


async def test_stop_with_no_grace_cancels_a_step_in_flight() -> None:
    t = FakeTime()
    entered, cancelled = asyncio.Event(), asyncio.Event()

    async def stuck() -> bool:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return True

    w = Worker("test", stuck, interval=1.0, clock=t.clock, sleep=t.sleep)
    w.start()
    await settle(lambda: len(t.sleeps) == 1)
    t.advance(1.0)
    await settle(entered.is_set)
    assert await w.stop() is True
    assert cancelled.is_set() and not w.running


def test_settings_are_checked() -> None:
    async def ok() -> None:
        return None

    with pytest.raises(ValueError):
        Worker("x", ok, interval=0)
    with pytest.raises(ValueError):
        Worker("x", ok, interval=1, backoff_initial=2, backoff_max=1)
