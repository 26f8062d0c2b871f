"""Claude Code, the real CLI from npm, run headless (``claude -p``) against the gateway with a Switchyard key.

It reaches the gateway through ``ANTHROPIC_BASE_URL`` and ``ANTHROPIC_API_KEY`` (a Switchyard virtual key), with
telemetry, auto-update and every non-essential call switched off. The upstream is scripted to take one agent step:
call Claude Code's ``Read`` tool on a file in the working directory, then answer in text once the tool result is
back. Claude Code runs the tool itself, so the file's content reaches the upstream only if the whole loop (tool
use out, tool result in, mid-conversation system messages, beta headers) crosses the gateway intact.

Two upstreams: the fake Anthropic Messages API (same wire: bodies and ``anthropic-beta`` pass through) and the fake
OpenAI Chat Completions API (translated). The CLI is installed once into ``~/.cache/switchyard/claude-code`` (or
``$SWITCHYARD_CLAUDE_CODE_DIR``) and reused. The test skips only when ``node`` or ``npm`` is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import USER_KEY, RunningGateway, base_config, run_gateway

pytestmark = pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None,
                                reason="node and npm are needed to install and run Claude Code; they are absent")

SECRET = "the-harbour-light-is-green"
CAPS = ["chat", "tools", "json", "vision", "files"]


def claude_binary() -> Path:
    """The ``claude`` executable, installed from npm on first use into a cache directory shared by runs."""
    root = Path(os.environ.get("SWITCHYARD_CLAUDE_CODE_DIR") or Path.home() / ".cache" / "switchyard" / "claude-code")
    binary = root / "node_modules" / ".bin" / "claude"
    if not binary.exists():
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(root),
                        "@anthropic-ai/claude-code"], check=True, capture_output=True, timeout=600)
    return binary


def claude_version(binary: Path) -> str:
    return subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60,
                          check=True).stdout.split()[0]


def run_claude(binary: Path, gw: RunningGateway, workdir: Path, prompt: str, model: str | None) -> dict[str, Any]:
    """``model`` None: Claude Code sends its own default model ids, which the gateway must map by alias."""
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ["PATH"], "HOME": str(home), "TERM": "dumb",
        "ANTHROPIC_BASE_URL": gw.url, "ANTHROPIC_API_KEY": USER_KEY,
        **({"ANTHROPIC_MODEL": model, "ANTHROPIC_DEFAULT_HAIKU_MODEL": model} if model else {}),
        "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1", "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    proc = subprocess.run([str(binary), "-p", prompt, "--allowedTools", "Read", "--output-format", "json",
                           "--max-turns", "4"], env=env, cwd=workdir, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"claude failed ({proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.fixture(scope="module")
def claude() -> Path:
    return claude_binary()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "notes.txt").write_text(f"The password of the day: {SECRET}\n")
    return tmp_path


def test_version_is_known(claude: Path) -> None:
    assert claude_version(claude)[0].isdigit()


def test_tool_loop_through_anthropic_wire(claude: Path, workdir: Path) -> None:
    fake = FakeAnthropic(api_key="sk-ant-fake", script_tools=[("Read", {"file_path": str(workdir / "notes.txt")})])
    with fake.serve() as url:
        cfg = base_config(providers={"anth": {"type": "anthropic", "api_key": "sk-ant-fake", "base_url": url}},
                          deployments=[{"name": "claude-gw", "provider": "anth", "model": "claude-up",
                                        "capabilities": CAPS}])
        with run_gateway(cfg) as gw:
            out = run_claude(claude, gw, workdir, "What does notes.txt say?", "claude-gw")
    assert not fake.violations
    assert out["is_error"] is False and SECRET in out["result"]  # the echo of the tool result came back
    bodies = [r.json for r in fake.requests]
    assert all(b["model"] == "claude-up" for b in bodies)
    # the tool result that Claude Code produced reached the upstream, after the tool_use it answers
    results = [blk for b in bodies for m in b["messages"] if isinstance(m["content"], list)
               for blk in m["content"] if blk.get("type") == "tool_result"]
    assert results and SECRET in json.dumps(results)
    # same wire: the client's beta flags and its mid-conversation system messages pass through unchanged
    betas = fake.requests[-1].headers["anthropic-beta"].split(",")
    assert "claude-code-20250219" in betas
    assert any(m["role"] == "system" for b in bodies for m in b["messages"])


def test_tool_loop_through_openai_wire(claude: Path, workdir: Path) -> None:
    fake = FakeOpenAI(script_tools=[("Read", {"file_path": str(workdir / "notes.txt")})])
    with fake.serve() as url:
        cfg = base_config(providers={"oai": {"type": "openai", "api_key": "sk-fake", "base_url": url + "/v1"}},
                          deployments=[{"name": "smart", "provider": "oai", "model": "gpt-4o",
                                        "capabilities": CAPS}],
                          aliases={"claude-*": "smart"})  # whatever Claude Code's default model is today
        with run_gateway(cfg) as gw:
            out = run_claude(claude, gw, workdir, "What does notes.txt say?", None)
    assert out["is_error"] is False and SECRET in out["result"]
    bodies = [r.json for r in fake.requests if r.path.endswith("/chat/completions")]
    assert bodies and all(b["model"] == "gpt-4o" for b in bodies)
    tool_msgs = [m for b in bodies for m in b["messages"] if m["role"] == "tool"]
    assert tool_msgs and SECRET in json.dumps(tool_msgs)
    assert all("anthropic-beta" not in r.headers for r in fake.requests)  # Anthropic's flags stay behind

