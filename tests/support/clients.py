"""What the third-party client tests (``tests/test_client_*.py``) share: one gateway in front of both fakes
(``fake_openai_server`` and ``fake_anthropic_server``, conftest's) per test module, and the models that pick the
upstream. conftest re-exports the fixtures (``client_gw``, ``client_upstreams``).

``gpt-4o-mini`` goes to the fake OpenAI Chat Completions API and ``claude`` to the fake Anthropic Messages API, so a
client of either wire runs once on its own wire and once translated.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from switchyard.config import parse_config
from switchyard.server.factory import build

from .fake_anthropic import FakeAnthropic
from .fake_openai import FakeOpenAI
from .gateway import RunningGateway, base_config
from .servers import serve_asgi

__all__ = ["KEY", "MODELS", "UPSTREAM_MODEL", "ClientGateway", "Upstreams", "cache_dir", "client_gw",
           "client_upstreams", "clients_config", "install_lock"]

KEY = "sk-test-clients-0123456789"
MODELS = ["gpt-4o-mini", "claude"]
UPSTREAM_MODEL = {"gpt-4o-mini": "gpt-4o-mini", "claude": "claude-sonnet-4-5"}


def clients_config(openai_url: str, anthropic_url: str) -> dict[str, Any]:
    return base_config(
        providers={"oa": {"type": "openai", "base_url": f"{openai_url}/v1", "api_key": "sk-upstream-openai"},
                   "an": {"type": "anthropic", "base_url": anthropic_url, "api_key": "sk-upstream-anthropic"}},
        deployments=[{"name": "gpt-4o-mini", "provider": "oa"},
                     {"name": "claude", "provider": "an", "model": UPSTREAM_MODEL["claude"]}],
        keys=[{"key": KEY, "name": "clients"}],
    )


@dataclass
class ClientGateway(RunningGateway):
    paths: list[str] = field(default_factory=list)  # "METHOD /path" of every request the gateway received


@pytest.fixture(scope="module")
def client_gw(fake_openai_server: FakeOpenAI, fake_anthropic_server: FakeAnthropic) -> Iterator[ClientGateway]:
    """The gateway as ``switchyard serve`` builds it, behind a layer that notes each request's path (which endpoint
    a client chose is part of what these tests check)."""
    assert fake_openai_server.base_url and fake_anthropic_server.base_url
    cfg = parse_config(clients_config(fake_openai_server.base_url, fake_anthropic_server.base_url), "<test>", {})
    app = build(cfg)
    paths: list[str] = []

    async def noting(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            paths.append(f"{scope['method']} {scope['path']}")
        await app(scope, receive, send)

    with serve_asgi(noting) as url:
        yield ClientGateway(url=url, gateway=app.state.gateway, config=cfg, paths=paths)


class Upstreams:
    """Both fakes, reset for one test; ``script`` makes whichever serves ``model`` call tools as given;
    ``paths`` are the gateway's requests during the test."""

    def __init__(self, oa: FakeOpenAI, an: FakeAnthropic, paths: list[str] | None = None) -> None:
        self.oa, self.an = oa, an
        self.paths = paths if paths is not None else []

    def script(self, tools: list[tuple[str, dict[str, Any]]]) -> None:
        self.oa.script_tools = tools
        self.an.script_tools = tools

    def bodies(self, model: str) -> list[dict[str, Any]]:
        """The JSON bodies the upstream behind ``model`` received, in order."""
        if model == "claude":
            return [r.json for r in self.an.requests if r.path == "/v1/messages"]
        return [r.json for r in self.oa.requests if r.path.endswith("/chat/completions")]


@pytest.fixture
def client_upstreams(fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic,
                     client_gw: ClientGateway) -> Iterator[Upstreams]:
    client_gw.paths.clear()
    yield Upstreams(fake_openai, fake_anthropic, client_gw.paths)
    assert not fake_anthropic.violations  # every frame the fake sent passed the anthropic SDK's types


@contextlib.contextmanager
def install_lock(root: Path) -> Iterator[None]:
    """Hold an exclusive lock beside ``root`` while installing into it (pytest-xdist workers share the cache)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def cache_dir(env_var: str, name: str) -> Path:
    """``$env_var`` if set, else ``~/.cache/switchyard/<name>``: where a client is installed once and reused."""
    return Path(os.environ.get(env_var) or Path.home() / ".cache" / "switchyard" / name)
