"""Run test servers: in-process ASGI apps (uvicorn in a thread) and external processes.

* :class:`ServerThread` / :func:`serve_asgi` serve any ASGI app on an ephemeral port. The
  listening socket is bound to port 0 *before* uvicorn starts and handed over, so there is
  no window in which another process can grab the port.
* :func:`run_process` starts a subprocess in its own process group, waits for a health URL
  and kills the whole group on exit. Output goes to a temp file that is printed (and put in
  the exception) when startup fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import uvicorn

__all__ = ["ManagedProcess", "ServerThread", "free_port", "run_process", "serve_asgi", "wait_http"]


def free_port(host: str = "127.0.0.1") -> int:
    """Return a currently free TCP port. Racy by nature: prefer passing a bound socket when you can."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_http(
    url: str,
    timeout: float = 10.0,
    *,
    interval: float = 0.05,
    proc: subprocess.Popen[bytes] | None = None,
) -> httpx.Response:
    """Poll ``GET url`` until it answers 2xx; return that response.

    Raises ``TimeoutError`` after ``timeout`` seconds, or ``RuntimeError`` as soon as ``proc``
    (if given) has exited.
    """
    deadline = time.monotonic() + timeout
    last: str = "no attempt made"
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} before {url} became ready")
        try:
            response = httpx.get(url, timeout=max(0.2, min(2.0, deadline - time.monotonic())))
            if response.is_success:
                return response
            last = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{url} not ready after {timeout:.1f}s (last: {last})")
        time.sleep(interval)


class ServerThread:
    """Serve an ASGI app with uvicorn in a daemon thread on an ephemeral port.

    Usage::

        with ServerThread(app) as server:
            httpx.get(server.base_url + "/v1/models")
    """

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        *,
        lifespan: Literal["auto", "on", "off"] = "auto",
        graceful_timeout: int = 2,
        **config: Any,
    ) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self.host = host
        self.port: int = int(self._sock.getsockname()[1])
        self.base_url = f"http://{host}:{self.port}"
        uv_config = uvicorn.Config(
            app,
            host=host,
            port=self.port,
            loop="auto",
            lifespan=lifespan,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=graceful_timeout,
            **config,
        )
        self.server = uvicorn.Server(uv_config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._sock]}, name=f"uvicorn-{self.port}", daemon=True
        )

    def start(self, timeout: float = 10.0) -> str:
        """Start serving and block until uvicorn reports it is accepting connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive():
                self._sock.close()
                raise RuntimeError(f"uvicorn failed to start on {self.base_url} (see log output above)")
            if time.monotonic() >= deadline:
                self.stop()
                raise TimeoutError(f"uvicorn did not start on {self.base_url} within {timeout:.1f}s")
            time.sleep(0.005)
        return self.base_url

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to exit, escalating to ``force_exit`` if it lingers."""
        if self._thread.is_alive():
            self.server.should_exit = True
            self._thread.join(timeout)
            if self._thread.is_alive():
                self.server.force_exit = True
                self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def serve_asgi(app: Any, host: str = "127.0.0.1", **kwargs: Any) -> Iterator[str]:
    """Serve ``app`` for the duration of the ``with`` block and yield its base URL."""
    with ServerThread(app, host, **kwargs) as server:
        yield server.base_url


@dataclass
class ManagedProcess:
    """A subprocess started by :func:`run_process`."""

    proc: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        """Everything the process has written to stdout/stderr so far."""
        return self.log_path.read_text(errors="replace")


def _kill_group(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the process group we created, then SIGKILL it if it does not go away."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    # Children may outlive the leader; the group id is still ours to clean up.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)


@contextlib.contextmanager
def run_process(
    cmd: Sequence[str],
    health_url: str,
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Iterator[ManagedProcess]:
    """Start ``cmd`` in a new process group, wait for ``health_url`` to answer 2xx, yield, kill.

    stdout and stderr are captured to a temp file; if the process does not become healthy the
    file's contents are printed to stderr and included in the raised ``RuntimeError``.
    """
    log = tempfile.NamedTemporaryFile(prefix="switchyard-proc-", suffix=".log", delete=False)  # noqa: SIM115
    log_path = Path(log.name)
    full_env = {**os.environ, **env} if env is not None else None
    try:
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except BaseException:
        log.close()
        log_path.unlink(missing_ok=True)
        raise
    managed = ManagedProcess(proc=proc, log_path=log_path)
    try:
        try:
            wait_http(health_url, timeout, interval=0.1, proc=proc)
        except (TimeoutError, RuntimeError) as exc:
            output = managed.output()
            print(f"--- output of {' '.join(cmd)} ---\n{output}\n--- end ---", file=sys.stderr)
            raise RuntimeError(f"{cmd[0]} failed to start: {exc}\n{output[-4000:]}") from exc
        yield managed
    finally:
        _kill_group(proc)
        log.close()
        log_path.unlink(missing_ok=True)
