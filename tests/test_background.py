"""Batch threads (switchyard.background) run below the event loop's CPU priority, as configured."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import pytest

from switchyard import background
from switchyard.config import parse_config


def _fresh_executor() -> None:
    ex = background._executors.pop(asyncio.get_running_loop(), None)
    if ex is not None:
        ex.shutdown(wait=True)


def _policy() -> tuple[int, int, str]:
    return os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0), threading.current_thread().name


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread scheduling classes are Linux's")
@pytest.mark.parametrize(("priority", "policy", "nice"), [
    ("idle", os.SCHED_IDLE, None), ("low", os.SCHED_OTHER, 10), ("normal", os.SCHED_OTHER, None)])
async def test_batch_threads_take_the_configured_priority(priority: background.Priority, policy: int,
                                                           nice: int | None) -> None:
    here = os.getpriority(os.PRIO_PROCESS, 0)
    _fresh_executor()  # threads take the priority when they start
    background.configure(priority)
    try:
        got_policy, got_nice, name = await background.run(_policy)
    finally:
        background.configure("idle")
        _fresh_executor()
    assert name.startswith("switchyard-batch")
    assert got_policy == policy
    assert got_nice == (here if nice is None else max(here, nice))
    assert (os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0)) == (os.SCHED_OTHER, here)  # not the loop


def test_the_priority_is_a_server_setting() -> None:
    assert parse_config({}, "<t>", {}).server.background_priority == "idle"
    cfg = parse_config({"server": {"background_priority": "normal"}}, "<t>", {})
    assert cfg.server.background_priority == "normal"
    with pytest.raises(Exception, match="background_priority"):
        parse_config({"server": {"background_priority": "realtime"}}, "<t>", {})
