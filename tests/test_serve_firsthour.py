"""``serve`` for a new user: the banner only once the port is bound; a store it cannot read said in plain words."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

import switchyard
from switchyard.cli.main import main
from tests.support.servers import free_port

HI: Any = [{"role": "user", "content": "hi"}]

CONFIG = """
providers:
  sim: {type: simulated}
deployments:
  - {name: a, provider: sim}
store: sqlite:///s.db
keys:
  - {key: sk-static-0123456789, name: static}
"""


def serve(config: Path, port: int, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("SWITCHYARD_MASTER_KEY", "SWITCHYARD_KEY_SECRET")}
    return subprocess.run([sys.executable, "-m", "switchyard.cli.main", "serve", "--config", str(config), "--port",
                           str(port)], capture_output=True, text=True, timeout=60, env={**base, **(env or {})})


def test_no_banner_when_the_port_is_taken(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = serve(config, port)
    assert proc.returncode != 0
    assert "listening on" not in proc.stdout and "try it" not in proc.stdout  # nothing claims to listen


def test_virtual_keys_without_a_secret_is_one_clear_message(tmp_path: Path) -> None:
    secret = "0123456789abcdef0123456789abcdef"
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG + f"governance: {{key_secret: '{secret}'}}\n")
    runner = CliRunner()
    assert runner.invoke(main, ["teams", "create", "t", "--org", "o", "--config", str(config)]).exit_code == 0
    assert runner.invoke(main, ["users", "create", "a@example.com", "--team", "t", "--config",
                                str(config)]).exit_code == 0
    made = runner.invoke(main, ["keys", "create", "--user", "a@example.com", "--config", str(config)])
    assert made.exit_code == 0, made.output
    config.write_text(CONFIG)  # the secret is gone, the keys are not
    proc = serve(config, free_port())
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "the store holds 1 virtual key, but no key secret is configured" in proc.stderr
    assert "SWITCHYARD_KEY_SECRET" in proc.stderr and "Traceback" not in proc.stderr + proc.stdout


def test_workers_print_the_banner_once_after_the_port_is_bound(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    port = free_port()
    base = {k: v for k, v in os.environ.items() if k not in ("SWITCHYARD_MASTER_KEY", "SWITCHYARD_KEY_SECRET")}
    proc = subprocess.Popen([sys.executable, "-m", "switchyard.cli.main", "serve", "--config", str(config), "--port",
                             str(port), "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=base)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "listening on" in first and "2 workers" in first, first + (proc.stderr.read() if proc.poll() else "")
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # said only once it is true
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": "a", "messages": HI},
                       headers={"authorization": "Bearer sk-static-0123456789"}, timeout=30)
        assert r.status_code == 200, r.text
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert (first + out).count("listening on") == 1 and "Traceback" not in err


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_one_line_and_no_restart_loop(tmp_path: Path, workers: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "switchyard.cli.main", "serve", "--config", str(config), "--port",
                               str(port), "--workers", workers], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: port {port} on 127.0.0.1 is in use (another Switchyard, or another "
                                   "server): stop it, or serve on another port with --port N (or server.port)")
    assert proc.stdout == ""


def test_common_mistakes_are_one_clear_message(tmp_path: Path) -> None:
    src = str(Path(switchyard.__file__).resolve().parents[1])  # these sources, from another directory too
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
           "SWITCHYARD_CONFIG": ""}

    def serve_args(*args: str, **more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "switchyard.cli.main", "serve", *args], capture_output=True,
                              text=True, timeout=60, cwd=tmp_path, env={**env, **more})

    missing = serve_args("--config", "nope.yaml")
    assert missing.returncode == 2 and missing.stderr.startswith("nope.yaml: no such config file")
    assert "no such config file: pass --config FILE, or set $SWITCHYARD_CONFIG" in missing.stderr
    (tmp_path / "bad.yaml").write_text("providers:\n  sim: {type: simulated\n")
    bad = serve_args("--config", "bad.yaml")
    assert bad.returncode == 2 and "line 3, column 1: not valid YAML" in bad.stderr
    none = serve_args()  # no --config, no $SWITCHYARD_CONFIG, no ./switchyard.yaml
    assert none.returncode == 2 and "switchyard.yaml" in none.stderr
    (tmp_path / "c.yaml").write_text(CONFIG)
    host = serve_args("--config", "c.yaml", "--host", "192.0.2.1", "--port", str(free_port()))
    assert host.returncode == 2 and "is not an address of this machine" in host.stderr
    short = serve_args("--config", "c.yaml", "--port", str(free_port()), SWITCHYARD_KEY_SECRET="short")
    assert short.returncode == 2 and short.stderr.strip() == (
        "c.yaml: SWITCHYARD_KEY_SECRET must be at least 16 characters long (it keys the stored hashes of virtual "
        "keys): use a long random string")
    for p in (missing, bad, none, host, short):
        assert "Traceback" not in p.stderr + p.stdout
