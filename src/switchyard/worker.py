"""One background loop, for every component that works off the hot path (the spend spool's shipper, the key
directory's poller, the webhook notifier, the call auditor).

A :class:`Worker` runs one *step* (a coroutine function) as an asyncio task:

* every ``interval`` seconds (``None``: only when woken);
* at once when :meth:`Worker.wake` is called: *urgency* (a queue past its threshold, new work for an idle
  notifier, shutdown);
* after a failure (the step returns False, or raises: logged with the worker's name), after an exponential back-off
  instead: ``backoff_initial * 2 ** (failures - 1)``, at most ``backoff_max``, less a random part of up to
  ``jitter`` of it (so that replicas that failed together do not retry together). A step that succeeds resets it.

:meth:`Worker.stop` wakes the loop for a last step (the step in flight finishes first) and gives it ``grace``
seconds before it is cancelled (``grace`` 0: cancelled at once); then, with a ``drain``, calls that until it reports
that nothing is left or ``grace`` has passed, backing off between tries.

The clock, the sleep and the random source are injectable (tests drive a worker without waiting).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("switchyard.worker")

Step = Callable[[], Awaitable[bool | None]]  # False (or an exception): failed, back off; else succeeded


class Worker:
    def __init__(self, name: str, step: Step, *, interval: float | None, backoff_initial: float = 0.25,
                 backoff_max: float = 30.0, jitter: float = 0.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 rand: Callable[[], float] = random.random) -> None:
        if (interval is not None and interval <= 0) or backoff_initial <= 0 or backoff_max < backoff_initial:
            raise ValueError("a worker's interval and back-off must be positive (backoff_max >= backoff_initial)")
        self.name = name
        self.step = step
        self.interval = interval
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.jitter = jitter
        self.clock = clock
        self.sleep = sleep
        self.rand = rand
        self.failures = 0  # consecutive failed steps
        self.steps = 0
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def backoff(self, failures: int | None = None) -> float:
        """The pause after ``failures`` consecutive failures (default: the current count)."""
        n = self.failures if failures is None else failures
        delay = min(self.backoff_max, self.backoff_initial * 2.0 ** max(0, n - 1))
        return delay * (1.0 - self.jitter * self.rand()) if self.jitter else delay

    def start(self) -> None:
        """Start the loop (in the running event loop); a no-op if it runs."""
        if self.running:
            return
        self._stopping = False
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"switchyard-{self.name}")

    def wake(self) -> None:
        """Run the next step now (urgency); does nothing when the worker is not running."""
        if self._wake is not None:
            self._wake.set()

    async def run_step(self, step: Step | None = None) -> bool:
        """One step (default: the worker's), its outcome counted (True: it succeeded)."""
        self.steps += 1
        try:
            ok = await (step or self.step)() is not False
        except Exception:
            log.exception("%s: a step failed", self.name)
            ok = False
        self.failures = 0 if ok else self.failures + 1
        return ok

    async def _run(self) -> None:
        while True:
            await self._pause(self.backoff() if self.failures else self.interval)
            await self.run_step()  # woken to stop, too: a last step sends what is queued
            if self._stopping:
                return

    async def _pause(self, delay: float | None) -> None:
        """Until ``delay`` has passed (None: forever) or the worker is woken."""
        wake = self._wake
        assert wake is not None
        if not wake.is_set():
            waiter = asyncio.ensure_future(wake.wait())
            timer = asyncio.ensure_future(self.sleep(delay)) if delay is not None else None
            try:
                await asyncio.wait([waiter] if timer is None else [waiter, timer],
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (waiter, timer):
                    if t is not None and not t.done():
                        t.cancel()
        wake.clear()

    async def stop(self, grace: float = 0.0, drain: Step | None = None) -> bool:
        """Stop the loop: it runs a last step (``grace`` 0: it is cancelled at once), and that step may take
        ``grace`` seconds (else it is cancelled). Then call ``drain`` until it succeeds, for at most ``grace`` seconds
        in all. True when it ended drained (or there was nothing to drain)."""
        deadline = self.clock() + grace
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            self.wake()
            if not task.done() and grace > 0:
                with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), max(0.0, grace))
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._wake = None
        if drain is None:
            return True
        while True:
            ok = await self.run_step(drain)
            left = deadline - self.clock()
            if ok or left <= 0:
                return ok
            await self.sleep(min(self.backoff(), left))
