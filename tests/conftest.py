"""Shared fixtures. Servers run on loopback over real HTTP; nothing here mocks a service."""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.clients import client_gw, client_upstreams  # noqa: F401  (fixtures, re-exported)
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_openai import FakeOpenAI, make_fake_openai
from tests.support.steady import steady_url  # noqa: F401  (a session fixture, re-exported)


@pytest.fixture(scope="module")
def fake_openai_server() -> Iterator[FakeOpenAI]:
    fake = make_fake_openai()
    with fake.serve():
        yield fake


@pytest.fixture
def fake_openai(fake_openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    fake_openai_server.reset()
    yield fake_openai_server
    fake_openai_server.reset()


@pytest.fixture(scope="module")
def fake_anthropic_server() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic()
    with fake.serve():
        yield fake


@pytest.fixture
def fake_anthropic(fake_anthropic_server: FakeAnthropic) -> Iterator[FakeAnthropic]:
    fake_anthropic_server.reset()
    yield fake_anthropic_server
    fake_anthropic_server.reset()


# A thread left blocked (a store call in a worker pool, say) would hang the interpreter's exit after the summary,
# and CI would wait for its own timeout. Give the exit a grace period, then print every thread's stack (so the leak
# is visible and can be fixed) and leave with the session's own status.
EXIT_GRACE_S = 60.0
_status: list[int] = [0]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _status[0] = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    def watchdog() -> None:
        time.sleep(EXIT_GRACE_S)
        print(f"\npytest: the interpreter's exit hung for {EXIT_GRACE_S:.0f} s; threads still alive:",
              file=sys.stderr, flush=True)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        os._exit(_status[0])

    threading.Thread(target=watchdog, name="exit-watchdog", daemon=True).start()
