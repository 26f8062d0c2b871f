"""Start a real Switchyard gateway over HTTP on loopback, from a config dict, for tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from switchyard.config import Config, parse_config
from switchyard.pipeline import Gateway
from switchyard.records import Recorder
from switchyard.server.factory import build
from switchyard.stages import Stage

from .servers import serve_asgi

MASTER_KEY = "sk-test-master-0123456789"
USER_KEY = "sk-test-user-0123456789"


@dataclass
class RunningGateway:
    url: str  # http://127.0.0.1:PORT
    gateway: Gateway
    config: Config

    @property
    def openai_base(self) -> str:
        return self.url + "/v1"


def base_config(**overrides: Any) -> dict[str, Any]:
    """A config dict with a master key and one user key; tests add providers, deployments and routes."""
    cfg: dict[str, Any] = {
        "master_key": MASTER_KEY,
        "store": "sqlite:///:memory:",
        "keys": [{"key": USER_KEY, "name": "user"}],
        "providers": {},
        "deployments": [],
        "routes": {},
    }
    cfg.update(overrides)
    return cfg


@contextlib.contextmanager
def run_gateway(
    config: dict[str, Any],
    recorder: Recorder | None = None,
    env: dict[str, str] | None = None,
    store: object | None = None,
    extra_stages: Sequence[Stage] = (),
) -> Iterator[RunningGateway]:
    """The app as ``switchyard serve`` builds it (``server/factory.py``), with ``extra_stages`` in its chain."""
    cfg = parse_config(config, "<test>", env or {})
    app = build(cfg, recorder=recorder, store=store, extra_stages=extra_stages)
    with serve_asgi(app) as url:
        yield RunningGateway(url=url, gateway=app.state.gateway, config=cfg)


class ListRecorder:
    """A Recorder that keeps records in memory, for assertions."""

    def __init__(self) -> None:
        from switchyard.records import CallRecord

        self.records: list[CallRecord] = []

    def record(self, rec: Any) -> None:
        self.records.append(rec)
