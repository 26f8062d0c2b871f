"""Every example in README.md and docs/*.md runs as written, against the quickstart.

Each fenced code block is one of:

* **run**: a ```` ```sh ````, ```` ```bash ````, ```` ```console ```` or ```` ```python ```` block (or any block marked
  ``<!-- doc-test: run -->`` on the line before it). It runs against a gateway started from
  ``examples/quickstart.yaml`` (a copy of ``examples/`` in a temporary directory, which is the working directory),
  with ``SWITCHYARD_MASTER_KEY`` set as the docs say to set it, no provider keys (every answer simulated), and
  ``switchyard`` on the PATH. Shell blocks run in ``bash -euo pipefail``: they must exit 0 and print no API error
  object. A ``console`` block's ``$ `` lines are its commands, and the lines below each are what the terminal
  shows (stdout and stderr, compared exactly, or as JSON when both sides are JSON; ``…`` matches anything).
  Python blocks run with this interpreter, and so have the openai and anthropic SDKs.
* **skip**: marked ``<!-- doc-test: skip REASON -->`` on the line before it: it needs what a test cannot have (real
  provider keys, a long benchmark, a data set, a second server) and says so.
* anything else (diagrams, JSON and YAML shapes, HTTP synopses) is not run, but a block of any kind that holds a
  command line (``$ ``, ``curl``, ``switchyard``, ``python``, ``make``...) must be run or skipped: no command in the
  docs goes untested by accident.

The one liberty taken with the text: the docs' port 4000 becomes a free port (this machine runs other gateways).
All files share one gateway and store, and their blocks run in order, as a reader who follows them would run them:
so the examples compose (each page creates names of its own).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import switchyard
from tests.support.servers import free_port, run_process

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"^<!--\s*doc-test:\s*(\w+)\s*(.*?)\s*-->$")
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
RUNNABLE = {"sh", "bash", "console", "python"}
COMMAND = re.compile(r"^\s*(\$ |curl |switchyard |python3? |\.venv/bin/|make |export |OPENBLAS_|claude\b)", re.M)
MASTER_KEY = "sk-admin-doc-examples-0123456789"
PROVIDER_KEYS = ("OPENAI_API_KEY", "GROQ_API_KEY", "DEEPSEEK_API_KEY", "MISTRAL_API_KEY", "TOGETHER_API_KEY",
                 "OPENROUTER_API_KEY", "ANTHROPIC_API_KEY")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    mark: str | None  # "run" | "skip" | None
    reason: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.mark == "run" or (self.mark is None and self.lang in RUNNABLE)


def blocks(path: Path) -> list[Block]:
    lines = path.read_text().split("\n")
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang = m.groups()
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        before = next((x.strip() for x in reversed(lines[:i]) if x.strip()), "")
        marker = MARKER.match(before)
        body = "\n".join(x[len(indent):] if x.startswith(indent) else x for x in lines[i + 1:end])
        out.append(Block(path, i + 1, lang, body, marker.group(1) if marker else None,
                         marker.group(2) if marker else ""))
        i = end + 1
    return out


ALL = [b for p in DOCS for b in blocks(p)]


def test_every_command_in_the_docs_is_run_or_says_why_not() -> None:
    problems = []
    for b in ALL:
        if b.mark not in (None, "run", "skip"):
            problems.append(f"{b.where}: unknown marker 'doc-test: {b.mark}' (run or skip)")
        elif b.mark == "skip" and not b.reason:
            problems.append(f"{b.where}: 'doc-test: skip' needs a reason")
        elif b.mark is None and not b.runs and COMMAND.search(b.text):
            problems.append(f"{b.where}: a block with commands must run (```sh) or say why not "
                            "(<!-- doc-test: skip REASON -->)")
        elif b.mark == "run" and b.lang not in RUNNABLE | {""}:
            problems.append(f"{b.where}: a ```{b.lang} block cannot run")
    assert not problems, "\n".join(problems)
    assert sum(b.runs for b in ALL) >= 10  # the harness finds the examples (a parser gone wrong finds none)


# --- running ---------------------------------------------------------------------------------------------------


@dataclass
class Site:
    cwd: Path
    env: dict[str, str]
    port: int


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The quickstart, as `make run` serves it with a master key set, in a directory of its own: one for every
    file, as a reader who follows README.md and then each page would have (so the examples must compose)."""
    tmp_path = tmp_path_factory.mktemp("docs")
    shutil.copytree(ROOT / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns(".switchyard"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "switchyard"
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m switchyard.cli.main \"$@\"\n")
    shim.chmod(0o755)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "switchyard").symlink_to(shim)
    src = str(Path(switchyard.__file__).resolve().parents[1])
    env = {**os.environ, **dict.fromkeys(PROVIDER_KEYS, ""), "SWITCHYARD_MASTER_KEY": MASTER_KEY,
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p),
           "SWITCHYARD_CONFIG": "", "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("SWITCHYARD_KEY_SECRET", None)
    port = free_port()
    cmd = [sys.executable, "-m", "switchyard.cli.main", "serve", "--config", "examples/quickstart.yaml", "--port",
           str(port)]
    with run_process(cmd, f"http://127.0.0.1:{port}/health/ready", cwd=tmp_path, env=env, timeout=60):
        yield Site(tmp_path, env, port)


def _local(text: str, port: int) -> str:
    return re.sub(r"\b(127\.0\.0\.1|localhost):4000\b", lambda m: f"{m.group(1)}:{port}", text)


def _run(block: Block, site: Site) -> None:
    text = _local(block.text, site.port)
    if block.lang == "python":
        script = site.cwd / "example.py"
        script.write_text(text)
        cmd = [sys.executable, str(script)]
        done = subprocess.run(cmd, cwd=site.cwd, env=site.env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, f"{block.where}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return
    if block.lang == "console":
        _console(block, text, site)
        return
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", text], cwd=site.cwd, env=site.env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, f"{block.where}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert '"error":' not in done.stdout, f"{block.where}: an API error\n{done.stdout}"


def _console(block: Block, text: str, site: Site) -> None:
    """``$ command`` lines (a trailing backslash continues one), each followed by its expected output."""
    steps: list[tuple[str, list[str]]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            assert not steps, f"{block.where}: output before any command"
            i += 1
            continue
        command = lines[i][2:]
        while command.endswith("\\") and i + 1 < len(lines):
            i += 1
            command = command[:-1] + "\n" + lines[i]
        i += 1
        expected = []
        while i < len(lines) and not lines[i].startswith("$ "):
            expected.append(lines[i])
            i += 1
        steps.append((command, expected))
    for command, expected in steps:  # what the terminal shows: stdout and stderr, whatever the exit code
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=site.cwd, env=site.env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=180)
        got = [x.rstrip() for x in done.stdout.rstrip("\n").split("\n")]
        want = [x.rstrip() for x in "\n".join(expected).rstrip("\n").split("\n")]
        assert len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want, strict=True)), (
            f"{block.where}: {command}\nexpected:\n" + "\n".join(want) + "\ngot:\n" + "\n".join(got))


def _same(got: str, want: str) -> bool:
    if "…" in want:
        return re.fullmatch(".*".join(re.escape(p) for p in want.split("…")), got) is not None
    try:
        return bool(json.loads(got) == json.loads(want))
    except ValueError:
        return got == want


RUN_FILES = sorted({b.path for b in ALL if b.runs})


@pytest.mark.parametrize("path", RUN_FILES, ids=[str(p.relative_to(ROOT)) for p in RUN_FILES])
def test_doc_examples_run_as_written(path: Path, site: Site) -> None:
    if shutil.which("jq") is None and any("jq " in b.text for b in ALL if b.path == path and b.runs):
        pytest.skip("jq is not installed (apt-get install jq): the docs' curl examples pipe through it")
    for b in (b for b in ALL if b.path == path and b.runs):
        _run(b, site)
