"""The Vercel AI SDK (npm ``ai`` with ``@ai-sdk/openai`` and ``@ai-sdk/anthropic``), in a Node script, against the
gateway over HTTP: ``generateText``, ``streamText``, and a tool call that the SDK runs and answers (``stopWhen``),
plain and streamed.

Three ways in: ``openai.chat(model)`` (Chat Completions), ``openai(model)`` (the provider's default, the Responses
API) and ``anthropic(model)`` (Messages), each created with ``baseURL`` the gateway's ``/v1`` and ``apiKey`` a
Switchyard key; each meets both upstreams (the fake OpenAI and the fake Anthropic API). The fakes script the tool
call; the answer holds the city only if the call, the SDK's tool result and the history crossed the gateway intact.

The packages are installed once, at pinned versions, into ``~/.cache/switchyard/ai-sdk-<version>`` (or
``$SWITCHYARD_AI_SDK_DIR``) and reused. The test skips only when ``node`` or ``npm`` is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.clients import KEY, MODELS, UPSTREAM_MODEL, Upstreams, cache_dir, install_lock
from tests.support.gateway import RunningGateway

pytestmark = pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None,
                                reason="node and npm are needed to install and run the Vercel AI SDK; they are absent")

# The current major (7) declares node>=22; on an older Node the test takes the newest line that supports it (6).
PINS_NODE22 = {"ai": "7.0.185", "@ai-sdk/openai": "4.0.126", "@ai-sdk/anthropic": "4.0.112"}
PINS_NODE18 = {"ai": "6.0.333", "@ai-sdk/openai": "3.0.141", "@ai-sdk/anthropic": "3.0.140"}
SCRIPT = Path(__file__).parent / "support" / "vercel_ai_client.mjs"
VARIANTS = ["openai.chat", "openai", "anthropic"]
PATHS = {"openai.chat": "/v1/chat/completions", "openai": "/v1/responses", "anthropic": "/v1/messages"}


def node_major() -> int:
    version = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True, timeout=60).stdout
    return int(version.strip().lstrip("v").split(".")[0])


def pins() -> dict[str, str]:
    return PINS_NODE22 if node_major() >= 22 else PINS_NODE18


def installed(root: Path) -> dict[str, str]:
    out = {}
    for name in PINS_NODE22:
        manifest = root / "node_modules" / name / "package.json"
        if manifest.exists():
            out[name] = json.loads(manifest.read_text())["version"]
    return out


def ai_sdk_dir(wanted: dict[str, str]) -> Path:
    """A directory holding the pinned packages and the client script, installed on first use."""
    root = cache_dir("SWITCHYARD_AI_SDK_DIR", f"ai-sdk-{wanted['ai']}")
    with install_lock(root):
        if installed(root) != wanted:
            root.mkdir(parents=True, exist_ok=True)
            subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--save-exact", "--prefix", str(root),
                            *(f"{name}@{version}" for name, version in wanted.items())],
                           check=True, capture_output=True, timeout=600)
        script = root / SCRIPT.name
        if not script.exists() or script.read_bytes() != SCRIPT.read_bytes():
            tmp = root / f".{SCRIPT.name}.{os.getpid()}"
            tmp.write_bytes(SCRIPT.read_bytes())
            tmp.replace(script)
    return root


@pytest.fixture(scope="module")
def sdk() -> Path:
    return ai_sdk_dir(pins())


def run_client(sdk: Path, gw: RunningGateway, variant: str, model: str,
               env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = subprocess.run(["node", str(sdk / SCRIPT.name), variant, model, gw.url, KEY], capture_output=True,
                          text=True, timeout=120, env={"PATH": os.environ["PATH"], **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    *logged, last = proc.stdout.strip().splitlines()
    out: dict[str, Any] = json.loads(last)
    out["logged"] = logged  # what the SDK logged besides (its warnings go to the console)
    return out


def test_installed_versions(sdk: Path) -> None:
    assert installed(sdk) == pins()


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_ai_sdk(sdk: Path, client_gw: RunningGateway, client_upstreams: Upstreams, variant: str, model: str) -> None:
    client_upstreams.script([("get_weather", {"city": "Paris"})])
    check(run_client(sdk, client_gw, variant, model), client_upstreams, model)
    # every call entered by the variant's own endpoint
    assert client_upstreams.paths == [f"POST {PATHS[variant]}"] * 6


def test_anthropic_base_url_from_the_environment(sdk: Path, client_gw: RunningGateway,
                                                 client_upstreams: Upstreams) -> None:
    """``$ANTHROPIC_BASE_URL`` set as Claude Code and the Anthropic SDKs take it (no ``/v1``): the AI SDK appends
    ``/messages`` to it, and the gateway serves that path too."""
    client_upstreams.script([("get_weather", {"city": "Paris"})])
    out = run_client(sdk, client_gw, "anthropic.env", "claude", env={"ANTHROPIC_BASE_URL": client_gw.url})
    check(out, client_upstreams, "claude")
    assert client_upstreams.paths == ["POST /messages"] * 6


def check(out: dict[str, Any], client_upstreams: Upstreams, model: str) -> None:
    assert out["errors"] == [] and out["warnings"] == [] and out["logged"] == [], out
    gen = out["generate"]
    assert gen["text"] == "Echo: hello from vercel" and gen["finishReason"] == "stop"
    assert gen["usage"]["outputTokens"] == 4  # the fakes count words
    stream = out["stream"]
    assert stream["text"] == "Echo: stream this to me please" == "".join(stream["pieces"])
    assert len([p for p in stream["pieces"] if p]) >= 3  # it arrived in pieces
    assert stream["usage"]["outputTokens"] == 6 and stream["finishReason"] == "stop"
    for key in ("tools", "streamTools"):
        first, second = out[key]["steps"]
        assert first["toolCalls"] == [{"name": "get_weather", "input": {"city": "Paris"}}]
        assert first["toolResults"] == [{"name": "get_weather", "output": "sunny in Paris"}]
        assert first["finishReason"] == "tool-calls"
        assert second["toolCalls"] == [] and second["finishReason"] == "stop"
        assert out[key]["text"] == "Echo: sunny in Paris"  # the fakes echo the tool result
    bodies = client_upstreams.bodies(model)
    assert len(bodies) == 6 and all(b["model"] == UPSTREAM_MODEL[model] for b in bodies)
    assert [bool(b.get("stream")) for b in bodies] == [False, True, False, False, True, True]
