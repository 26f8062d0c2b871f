"""LlamaIndex's ``OpenAILike`` against the gateway over HTTP: complete, chat, and both streams.

LlamaIndex's OpenAI integration requires ``openai<3`` and the project's dev tools (the Agents SDK) ``openai>=3``, so
the client cannot share the project's virtualenv: it is installed once, at pinned versions, into its own virtualenv
under ``~/.cache/switchyard/`` (or ``$SWITCHYARD_LLAMAINDEX_DIR``) and runs there as a subprocess
(``tests/support/llamaindex_client.py``), which reaches the gateway over HTTP like any application would.
Both upstreams: the fake OpenAI API, and the fake Anthropic API (translated).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.clients import KEY, MODELS, UPSTREAM_MODEL, ClientGateway, Upstreams, cache_dir, install_lock
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_openai import FakeOpenAI

VERSION = "0.8.1"  # llama-index-llms-openai-like, the client under test; the rest pinned to what it resolved to
PINS = [f"llama-index-llms-openai-like=={VERSION}", "llama-index-llms-openai==0.8.3", "llama-index-core==0.14.25",
        "openai==2.54.0"]
SCRIPT = Path(__file__).parent / "support" / "llamaindex_client.py"


def llamaindex_python() -> Path:
    """The Python of a virtualenv holding the pinned LlamaIndex, created on first use."""
    root = cache_dir("SWITCHYARD_LLAMAINDEX_DIR", f"llamaindex-openai-like-{VERSION}")
    python, marker = root / "bin" / "python", root / "switchyard-pins.txt"
    with install_lock(root):
        if not python.exists() or not marker.exists() or marker.read_text().split() != PINS:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True, capture_output=True,
                           timeout=300)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PINS],
                           check=True, capture_output=True, timeout=900)
            marker.write_text("\n".join(PINS))
    return python


@dataclass
class Run:
    out: dict[str, Any]  # per model: what the client got
    bodies: dict[str, list[dict[str, Any]]]  # per model: what its upstream received
    paths: list[str]  # the gateway's requests, both models'


@pytest.fixture(scope="module")
def run(client_gw: ClientGateway, fake_openai_server: FakeOpenAI, fake_anthropic_server: FakeAnthropic) -> Run:
    """One run of the client script over both models (LlamaIndex takes seconds to import)."""
    python = llamaindex_python()
    fake_openai_server.reset()
    fake_anthropic_server.reset()
    client_gw.paths.clear()
    proc = subprocess.run([str(python), str(SCRIPT), client_gw.openai_base, KEY, *MODELS], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not fake_anthropic_server.violations
    upstreams = Upstreams(fake_openai_server, fake_anthropic_server)
    return Run(json.loads(proc.stdout), {m: upstreams.bodies(m) for m in MODELS}, list(client_gw.paths))


def test_endpoints(run: Run) -> None:
    """Four calls per model to Chat Completions, then the default client's one legacy completion."""
    assert run.paths == (["POST /v1/chat/completions"] * 4 + ["POST /v1/completions"]) * len(MODELS)


def test_installed_version() -> None:
    python = llamaindex_python()
    probe = "import importlib.metadata as m; print(m.version('llama-index-llms-openai-like'))"
    got = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert got.stdout.strip() == VERSION


@pytest.mark.parametrize("model", MODELS)
def test_openai_like(run: Run, model: str) -> None:
    out = run.out[model]
    assert out["complete"]["text"] == "Echo: complete this"
    assert out["complete"]["usage"]["completion_tokens"] == 3  # the fakes count words
    assert out["chat"] == {"role": "assistant", "content": "Echo: chat with me"}
    for key, said in (("stream_complete", "stream a completion"), ("stream_chat", "stream a chat")):
        pieces = [d for d in out[key] if d]
        assert "".join(pieces) == f"Echo: {said}"
        assert len(pieces) >= 3  # streamed in pieces, as the upstream sent them
    # the default OpenAILike (is_chat_model=False) sends the legacy /v1/completions, which the gateway does not
    # serve: a clear OpenAI error, never a 500
    legacy = out["legacy"]
    assert legacy["status"] == 404 and legacy["body"]["message"]

    bodies = run.bodies[model]
    assert [b.get("stream", False) for b in bodies] == [False, False, True, True]
    assert all(b["model"] == UPSTREAM_MODEL[model] for b in bodies)
    chat = bodies[1]
    if model == "claude":
        assert "Be brief." in json.dumps(chat["system"]) and chat["messages"][0]["content"] in (
            "chat with me", [{"type": "text", "text": "chat with me"}])
    else:
        assert chat["messages"] == [{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "chat with me"}]
