"""Batch work off the event loop (the request log, spend shipping, audit appends) on worker threads that run at
a lower CPU priority than serving.

A gateway pinned to one core shares it between its event loop and these threads. At the same priority, a batch of
store writes (a few milliseconds of CPU for a few hundred records) delays every request that arrives meanwhile:
measured at 500 requests/s on one core, the p99 was 4.2 ms against 2.7 ms at ``idle``. At ``idle`` (Linux
``SCHED_IDLE``) the kernel runs the loop first whenever it has work, and the batch threads use what it leaves;
``low`` is nice 10.
A saturated process would starve them, so a writer whose backlog has grown past its bound submits with
``urgent=True``: that batch runs on a second pool at normal priority, and the backlog (memory, spool on disk) stays
bounded while the serving loop pays the writes' full cost. ``normal`` turns the low priority off altogether.

Two executors per event loop (so that gateways in one process never wait for each other's threads), created on
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
_urgent: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ThreadPoolExecutor] = weakref.WeakKeyDictionary()

#: A writer's backlog (records waiting) past which its batches run at normal priority.
URGENT_BACKLOG = 2000


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


def executor(urgent: bool = False) -> ThreadPoolExecutor:
    """This loop's batch executor (``urgent``: the one at normal priority)."""
    loop = asyncio.get_running_loop()
    pools = _urgent if urgent else _executors
    ex = pools.get(loop)
    if ex is None:
        ex = pools[loop] = ThreadPoolExecutor(_MAX_THREADS, thread_name_prefix="switchyard-batch",
                                              initializer=None if urgent else _lower_priority)
    return ex


async def run(fn: Callable[..., T], *args: object, urgent: bool = False) -> T:
    """``fn(*args)`` on a batch thread (as :func:`asyncio.to_thread`, at the batch priority; ``urgent``: at normal
    priority, for a writer whose backlog is past :data:`URGENT_BACKLOG`)."""
    return await asyncio.get_running_loop().run_in_executor(executor(urgent), functools.partial(fn, *args))
