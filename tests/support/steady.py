"""The steady OpenAPI mock server (npm ``@stdy/cli``) serving the official OpenAI spec.

``steady_url`` (session fixture) yields ``http://127.0.0.1:PORT``; that *is* the OpenAI base URL:
the spec's paths are mounted at the root (``/chat/completions``, ``/embeddings``, ``/models``),
``/v1/...`` answers 404 (diagnostic ``E2001``). Health: ``GET /_x-steady/health``.

How steady 0.22.2 reports requests (observed by hand against ``../shared/specs/openai-openapi.yml``):

* Valid request: HTTP 200 with a body *generated from the response schema* (random-looking ids,
  text and numbers, e.g. ``finish_reason: "content_filter"``, ``index: 76``) and headers
  ``X-Steady-Request-Valid: true``, ``X-Steady-Error-Count: 0``,
  ``X-Steady-Matched-Path: /chat/completions``, ``X-Steady-Example-Source: generated``.
* Spec violation ("SDK issue", codes ``E3xxx`` of severity error; rejecting is the default,
  ``--reject-on-sdk-error``): HTTP **400**, ``X-Steady-Request-Valid: false``, per-diagnostic headers
  ``X-Steady-Error-N-Code`` / ``-Path`` / ``-Message`` and the JSON body
  ``{"error": "Validation failed", "steady": {"valid": false, "errors": [{"code": "E3008",
  "severity": "error", "category": "sdk-issue", "path": "body.messages",
  "message": "Expected type array, got string", "expected": "array", "actual": "string", ...}]}}``.
  Note ``error`` is a *string*, not OpenAI's error object. Seen: ``messages: "x"`` -> E3008
  (type mismatch), missing ``model`` -> E3007, ``reasoning_effort: "banana"`` -> E3016 (enum),
  malformed JSON -> E3021 + E3005.
* NOT rejected (HTTP 200, ``X-Steady-Request-Valid: true`` but ``X-Steady-Error-Count`` > 0):
  union mismatches (``E3012``, a warning, e.g. ``role: "robot"`` or ``input: {"a": 1}``; still a
  warning with ``--validator-strict-oneof``) and content notes ``E4xxx`` (e.g. ``temperature: 5`` ->
  E4004 range). Unknown extra body fields and a missing ``Authorization`` header are accepted
  silently. So a strict test must also assert :func:`steady_diagnostics` is empty.
* Streaming (``stream: true``) returns SSE only if the request sends ``Accept: text/event-stream``
  (the openai Python SDK does not; it gets a JSON body). Frames look like ``id: 0`` /
  ``event: message`` / ``data: {chunk}`` and the stream ends with ``event: done`` / ``data: {}``
  instead of ``data: [DONE]``. ``X-Steady-Stream-Count`` / ``X-Steady-Stream-Interval-Ms`` tune it.

Other useful CLI options (``steady --help``): ``--log-level summary|details|full``,
``--log-format text|json|ci``, ``--log-bodies``, ``-q``, ``--validator-strict-oneof``,
``--generator-seed=<n>`` (``-1`` random), ``--generator-array-size=<n>``, ``--stream-count``,
``--stream-interval``; per request headers ``X-Steady-Reject-On-Error``, ``X-Steady-Seed``, ... .
``steady explain [code]`` lists the diagnostic codes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from .servers import free_port, run_process

__all__ = [
    "OPENAI_SPEC",
    "REPO_ROOT",
    "STEADY_VERSION",
    "ensure_steady",
    "run_steady",
    "steady_diagnostics",
    "steady_url",
]

STEADY_VERSION = "0.22.2"
REPO_ROOT = Path(__file__).resolve().parents[2]
STEADY_PREFIX = REPO_ROOT / ".tools" / "steady"
OPENAI_SPEC = REPO_ROOT / ".." / "shared" / "specs" / "openai-openapi.yml"


def _installed_version(prefix: Path) -> str | None:
    try:
        manifest = json.loads((prefix / "node_modules" / "@stdy" / "cli" / "package.json").read_text())
    except (OSError, ValueError):
        return None
    return str(manifest.get("version"))


def ensure_steady(prefix: Path = STEADY_PREFIX, version: str = STEADY_VERSION) -> Path:
    """Return the ``steady`` executable, npm-installing ``@stdy/cli@version`` into ``prefix`` if needed.

    Skips the calling test when ``node`` (or ``npm``, if an install is needed) is missing.
    """
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the steady OpenAPI mock needs it")
    binary = prefix / "node_modules" / ".bin" / "steady"
    if binary.exists() and _installed_version(prefix) == version:
        return binary
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: needed once to install the steady OpenAPI mock")
    prefix.mkdir(parents=True, exist_ok=True)
    with (prefix / ".install.lock").open("w") as lock:  # parallel test workers install only once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (binary.exists() and _installed_version(prefix) == version):
            cmd = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", f"@stdy/cli@{version}"]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return binary


@contextlib.contextmanager
def run_steady(
    spec: Path = OPENAI_SPEC, *, extra_args: Sequence[str] = (), host: str = "127.0.0.1", timeout: float = 60.0
) -> Iterator[str]:
    """Run steady on ``spec`` on a free port; yield its base URL (the API root, no ``/v1``)."""
    binary = ensure_steady()
    if not spec.exists():
        pytest.skip(f"OpenAPI spec not found at {spec}")
    port = free_port(host)
    base = f"http://{host}:{port}"
    cmd = [str(binary), "--host", host, "-p", str(port), "--no-color", *extra_args, str(spec.resolve())]
    with run_process(cmd, f"{base}/_x-steady/health", cwd=REPO_ROOT, timeout=timeout):
        yield base


def steady_diagnostics(headers: Mapping[str, str]) -> list[dict[str, str]]:
    """The diagnostics steady attached to a response (``X-Steady-Error-N-Code/Path/Message``).

    Includes the non-fatal ones (``E3012`` union mismatch, ``E4xxx`` notes) that do not turn the
    response into a 400; an empty list means steady found nothing to complain about.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    count = int(lower.get("x-steady-error-count", "0"))
    return [
        {key: lower.get(f"x-steady-error-{n}-{key}", "") for key in ("code", "path", "message")}
        for n in range(1, count + 1)
    ]


@pytest.fixture(scope="session")
def steady_url() -> Iterator[str]:
    """Session-wide steady mock of the OpenAI API; yields its base URL (use it as ``base_url``)."""
    with run_steady() as url:
        yield url
