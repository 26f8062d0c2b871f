"""deploy/compose.yaml without Docker: its two gateways and its nginx, run here as processes on loopback.

The gateways run the image's command and config with the environment Compose gives them (its variables resolved
from a test .env), on the test PostgreSQL and Redis (a database and key prefix of their own); nginx runs
deploy/nginx.conf with only the service names, the listening port and the pid file replaced by loopback ones.
Through the balancer: both replicas answer, an SDK call and a stream go through, a
virtual key made through one replica works at once on the other (one store), and /metrics is not exposed.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from tests.support.deploy import DEPLOY, ROOT, compose, compose_substitute, dockerfile_stages, moved_config, tool
from tests.support.ledger import clean_env, redis_prefix, redis_url
from tests.support.pg import pg_database_url
from tests.support.servers import free_port, run_process, wait_http

DOTENV = {"POSTGRES_PASSWORD": "unused", "SWITCHYARD_MASTER_KEY": "sk-compose-master-0123456789",
          "SWITCHYARD_KEY_SECRET": "compose-key-secret-0123456789"}
GATEWAYS = ("gateway-1", "gateway-2")


def _gateway_env(store: str, config: Path) -> dict[str, str]:
    """gateway-1's environment from compose.yaml, with the test services in place of postgres and redis."""
    env = {k: compose_substitute(str(v), DOTENV) for k, v in compose()["services"]["gateway-1"]["environment"].items()}
    env.update(SWITCHYARD_STORE_URL=store, SWITCHYARD_REDIS_URL=redis_url())
    base = {k: v for k, v in clean_env().items() if not k.endswith("_API_KEY")}
    path = os.pathsep.join(p for p in (str(ROOT / "src"), base.get("PYTHONPATH")) if p)
    return {**base, **{k: v for k, v in env.items() if v}, "PYTHONPATH": path, "SWITCHYARD_CONFIG": str(config)}


@contextlib.contextmanager
def _nginx(tmp: Path, upstreams: dict[str, int]) -> Iterator[int]:
    conf = (DEPLOY / "nginx.conf").read_text()
    port = free_port()
    for name, p in upstreams.items():
        conf = conf.replace(f"server {name}:4000 ", f"server 127.0.0.1:{p} ")
    conf = conf.replace("listen 4000;", f"listen 127.0.0.1:{port};").replace("pid /tmp/nginx.pid;",
                                                                             f"pid {tmp}/nginx.pid;")
    assert all(f"127.0.0.1:{p}" in conf for p in upstreams.values())
    path = tmp / "nginx.conf"
    path.write_text(conf)
    nginx = tool("nginx")
    assert nginx is not None
    check = subprocess.run([nginx, "-t", "-e", "stderr", "-p", str(tmp), "-c", str(path)], capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([nginx, "-e", "stderr", "-p", str(tmp), "-c", str(path), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/health/live", 20, interval=0.1, proc=proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    """(the balancer's URL, each replica's own URL)."""
    if tool("nginx") is None:
        pytest.skip("nginx is not installed (Debian package nginx-light)")
    tmp = tmp_path_factory.mktemp("compose")
    cmd = dockerfile_stages()[-1].all("CMD")[-1]
    assert cmd == '["serve", "--host", "0.0.0.0", "--port", "4000"]'
    with pg_database_url() as store, redis_prefix() as prefix, contextlib.ExitStack() as stack:
        ports: dict[str, int] = {}
        for name in GATEWAYS:  # each its own spool, as each container has its own volume
            own = tmp / name
            own.mkdir()
            config = moved_config(own, ledger={"key_prefix": prefix})
            port = ports[name] = free_port()
            serve = [sys.executable, "-m", "switchyard.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port)]
            stack.enter_context(run_process(serve, f"http://127.0.0.1:{port}/health/ready",
                                            env=_gateway_env(store, config), cwd=own, timeout=60))
        lb = f"http://127.0.0.1:{stack.enter_context(_nginx(tmp, ports))}"
        yield lb, [f"http://127.0.0.1:{p}" for p in ports.values()]


@pytest.fixture(scope="module")
def lb(cluster: tuple[str, list[str]]) -> str:
    return cluster[0]


def test_both_replicas_answer_through_the_balancer(lb: str) -> None:
    pids = set()
    for _ in range(8):
        with httpx.Client(timeout=10) as c:  # a fresh connection each time
            r = c.get(f"{lb}/health/live")
            assert r.status_code == 200
            pids.add(r.json()["pid"])
    assert len(pids) == 2
    assert httpx.get(f"{lb}/health/ready").json()["status"] == "ready"


def test_calls_and_streams_go_through(lb: str) -> None:
    client = OpenAI(base_url=f"{lb}/v1", api_key=DOTENV["SWITCHYARD_MASTER_KEY"], max_retries=0)
    reply = client.chat.completions.create(model="default", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    stream = client.chat.completions.create(model="default", messages=[{"role": "user", "content": "hello there"}],
                                            stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text  # the SDK read a whole SSE stream through nginx (proxy_buffering off: tests/test_deploy.py)


def test_a_key_made_through_the_balancer_works_on_every_replica(cluster: tuple[str, list[str]]) -> None:
    lb, replicas = cluster
    admin = {"authorization": f"Bearer {DOTENV['SWITCHYARD_MASTER_KEY']}"}
    with httpx.Client(base_url=lb, headers=admin, timeout=10) as c:
        org = c.post("/admin/orgs", json={"name": "compose-org"})
        assert org.status_code == 201, org.text
        user = c.post("/admin/users", json={"org_id": org.json()["id"], "email": "dev@example.com"})
        assert user.status_code == 201, user.text
        key = c.post("/admin/keys", json={"user_id": user.json()["id"], "name": "k"})
        assert key.status_code == 201, key.text
    secret = key.json()["secret"]
    for url in replicas:  # each replica, asked directly, knows the key: one store behind both
        r = httpx.get(f"{url}/v1/models", headers={"authorization": f"Bearer {secret}"}, timeout=10)
        assert r.status_code == 200, r.text
    wrong = httpx.get(f"{lb}/v1/models", headers={"authorization": f"Bearer {secret}x"}, timeout=10)
    assert wrong.status_code == 401


def test_metrics_are_not_exposed_through_the_balancer(lb: str) -> None:
    assert httpx.get(f"{lb}/metrics").status_code == 404
    assert httpx.get(f"{lb}/docs").status_code == 200
    assert re.search(r"server_tokens off;", (DEPLOY / "nginx.conf").read_text())
