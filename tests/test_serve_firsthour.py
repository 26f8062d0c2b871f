"""``serve`` for a new user: the banner only once the port is bound; a store it cannot read said in plain words."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from switchyard.cli.main import main
from tests.support.servers import free_port

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
    assert "the store holds 1 virtual keys, but no key secret is configured" in proc.stderr
    assert "SWITCHYARD_KEY_SECRET" in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
