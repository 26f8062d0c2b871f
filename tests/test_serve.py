"""`switchyard serve` as a real process: the quickstart on the embedded default (SQLite under ./.switchyard/),
what it prints, and call records that reach the store, flushed on shutdown."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from tests.support.ledger import wait_for
from tests.support.servers import free_port, run_process

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
KEY = "sk-switchyard-quickstart"
PROVIDER_KEYS = ("OPENAI_API_KEY", "GROQ_API_KEY", "DEEPSEEK_API_KEY", "MISTRAL_API_KEY", "TOGETHER_API_KEY",
                 "OPENROUTER_API_KEY", "SWITCHYARD_MASTER_KEY", "SWITCHYARD_QUICKSTART_KEY")


def test_quickstart_serves_on_the_embedded_default(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_KEYS}
    config = tmp_path / "quickstart.yaml"  # its SQLite store resolves beside it (examples/.switchyard otherwise)
    config.write_text(QUICKSTART.read_text())
    cmd = [sys.executable, "-m", "switchyard.cli.main", "serve", "--config", str(config), "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with run_process(cmd, f"{base}/health/ready", cwd=tmp_path, env=env, timeout=30) as proc:
        printed = proc.output()
        assert f"listening on http://127.0.0.1:{port}" in printed
        for name in ("sim-small", "sim-large", "sim-embed", "fast"):
            assert name in printed
        assert "deployment gpt-4.1" not in printed  # no OpenAI key in the environment: no OpenAI deployments
        assert "disabled providers" in printed and "openai" in printed
        assert "every answer is simulated: no provider key is set" in printed and "(simulated)" in printed
        assert f"key: {KEY}" in printed and f"curl -s http://127.0.0.1:{port}/v1/chat/completions" in printed
        assert "from openai import OpenAI" in printed and "admin API: set master_key" in printed

        with openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0) as client:
            reply = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hello"}])
            assert reply.choices[0].message.content
            chunks = list(client.chat.completions.create(
                model="sim-large", messages=[{"role": "user", "content": "hi"}], max_tokens=3, stream=True))
            assert chunks[-1].choices[0].finish_reason == "length"
            assert len(client.embeddings.create(model="embed", input=["a", "b"]).data) == 2

        os.killpg(proc.proc.pid, signal.SIGTERM)  # a graceful stop flushes the batched writer
        assert proc.proc.wait(15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after its clean stop

    db = tmp_path / ".switchyard" / "switchyard.db"
    assert db.exists()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT endpoint, model, deployment, status, principal_id FROM request_log "
                            "ORDER BY id").fetchall()
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert rows == [
        ("chat", "fast", "sim-small", "ok", "key:quickstart"),
        ("chat", "sim-large", "sim-large", "ok", "key:quickstart"),
        ("embeddings", "embed", "sim-embed", "ok", "key:quickstart"),
    ]
    assert mode == "wal"


def test_workers_share_one_port_and_stop_together(tmp_path: Path) -> None:
    import httpx

    port = free_port()
    config = tmp_path / "c.yaml"
    config.write_text(
        f"store: sqlite:///{tmp_path}/w.db\nkeys: [{{key: {KEY}, name: q}}]\n"
        "providers: {sim: {type: simulated}}\ndeployments: [{name: s, provider: sim}]\n"
    )
    cmd = [sys.executable, "-m", "switchyard.cli.main", "serve", "--config", str(config), "--port", str(port),
           "--workers", "2"]
    base = f"http://127.0.0.1:{port}"
    with run_process(cmd, f"{base}/health/ready", cwd=tmp_path, timeout=30) as proc:
        wait_for(lambda: "2 workers" in proc.output(), what="the banner (printed once a worker has bound the port)")
        pids: set[int] = set()
        for _ in range(200):  # a new connection each time: the kernel spreads them across the workers
            with httpx.Client() as c:
                r = c.get(f"{base}/health/live")
                if r.status_code == 200:
                    pids.add(r.json()["pid"])
            if len(pids) == 2:
                break
        assert len(pids) == 2 and proc.proc.pid not in pids
        with openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0) as client:
            for _ in range(10):
                assert client.chat.completions.create(model="s", messages=[{"role": "user", "content": "x"}]).choices
        proc.proc.send_signal(signal.SIGTERM)  # the supervisor alone: it must stop its workers
        proc.proc.wait(20)
        for pid in pids:  # every worker is gone too
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    with sqlite3.connect(tmp_path / "w.db") as conn:
        assert conn.execute("SELECT count(*) FROM request_log").fetchone()[0] == 10


def test_workers_with_virtual_keys_need_a_shared_ledger(tmp_path: Path) -> None:
    """N workers each enforcing their own copy of a budget would let through N times it: refused at start."""
    import subprocess

    config = tmp_path / "c.yaml"
    config.write_text(
        f"master_key: sk-master-0123456789abcdef\nstore: sqlite:///{tmp_path}/w.db\n"
        "providers: {sim: {type: simulated}}\ndeployments: [{name: s, provider: sim}]\n"
    )
    cmd = [sys.executable, "-m", "switchyard.cli.main", "serve", "--config", str(config), "--port",
           str(free_port()), "--workers", "2"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--workers 2 needs ledger.redis" in done.stderr
    assert not (tmp_path / "w.db").exists()  # refused before it touched the store


def test_a_store_that_cannot_be_migrated_is_said_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "future.db"
    with sqlite3.connect(db) as conn:  # a revision this version does not know: the migration child refuses it
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES ('9999')")
    config = tmp_path / "c.yaml"
    config.write_text(f"store: sqlite:///{db}\nproviders: {{sim: {{type: simulated}}}}\n"
                      "deployments: [{name: m, provider: sim}]\n")
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_KEYS}
    cmd = [sys.executable, "-m", "switchyard.cli.main", "serve", "--config", str(config), "--port", str(free_port())]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "cannot open the store" in done.stderr and "9999" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_gateway_runs_blas_on_one_thread_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    from switchyard.cli.serve import BLAS_THREADS, single_threaded_blas

    for var in BLAS_THREADS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "4")  # the operator's choice stands
    single_threaded_blas()
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1" and os.environ["OMP_NUM_THREADS"] == "1"
    assert os.environ["MKL_NUM_THREADS"] == "4"
    # it takes effect only if numpy is not loaded yet when `serve` starts: the command and the app do not load it
    # (the auto router does, once the config names it)
    code = ("import sys; import switchyard.cli.main, switchyard.cli.serve, switchyard.server.app, "
            "switchyard.routing; print(sorted(m for m in sys.modules if m == 'numpy'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
