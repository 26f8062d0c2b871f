"""Batch work off the event loop (the request log, spend shipping, audit appends) on worker threads that run at
a lower CPU priority than serving.

A gateway pinned to one core shares it between its event loop and these threads. At the same priority, a batch of
store writes (a few milliseconds of CPU for a few hundred records) delays every request that arrives meanwhile:
measured at 500 requests/s on one core, the p99 went from 2.9 ms to 4.1 ms. At ``idle`` (Linux ``SCHED_IDLE``)
the kernel runs the loop first whenever it has work, and the batch threads use what it leaves; ``low`` is nice 10.
Under sustained saturation the batches fall behind instead: spend waits in its durable spool on disk, audit records
in their queue, and both catch up when the load drops. Nothing is lost either way; ``normal`` turns this off.

One executor per event loop (so that gateways in one process never wait for each other's threads), created on
first use; :func:`configure` sets the priority for the threads that start after it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, TypeVar

T = TypeVar("T")
Priority = Literal["idle", "low", "normal"]

log = logging.getLogger("switchyard.background")

_MAX_THREADS = 4
_priority: list[Priority] = ["idle"]
_executors: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ThreadPoolExecutor] = weakref.WeakKeyDictionary()


def configure(priority: Priority) -> None:
    """The CPU priority of batch threads started from now on."""
    _priority[0] = priority


def _lower_priority() -> None:
    """Runs first in every batch thread: on Linux, priority is a per-thread attribute (0 means this thread)."""
    priority = _priority[0]
    try:
        if priority == "idle" and hasattr(os, "SCHED_IDLE"):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        elif priority in ("idle", "low"):
            os.setpriority(os.PRIO_PROCESS, 0, 10)
    except OSError as e:  # a platform or sandbox that refuses: run at normal priority
        log.debug("background threads stay at normal priority: %s", e)


def executor() -> ThreadPoolExecutor:
    """This loop's batch executor."""
    loop = asyncio.get_running_loop()
    ex = _executors.get(loop)
    if ex is None:
        ex = _executors[loop] = ThreadPoolExecutor(_MAX_THREADS, thread_name_prefix="switchyard-batch",
                                                   initializer=_lower_priority)
    return ex


async def run(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` on a batch thread (as :func:`asyncio.to_thread`, at the batch priority)."""
    return await asyncio.get_running_loop().run_in_executor(executor(), functools.partial(fn, *args))
