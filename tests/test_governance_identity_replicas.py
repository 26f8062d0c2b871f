"""Revocation across replicas: two ``switchyard serve`` processes share one PostgreSQL; a key revoked through one
(or through the CLI, straight on the store) is refused by the other within one second, with the default
``poll_interval`` of 0.5 s."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import yaml

from tests.support.gateway import MASTER_KEY
from tests.support.governance import Admin, sdk_http_client, unique
from tests.support.pg import pg_database_url
from tests.support.servers import free_port, run_process

HI: list[dict[str, str]] = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with pg_database_url() as url:
        path = tmp_path_factory.mktemp("replicas") / "gateway.yaml"
        path.write_text(yaml.safe_dump({
            "master_key": MASTER_KEY,
            "store": url,
            "providers": {"sim": {"type": "simulated", "output_tokens": 2}},
            "deployments": [{"name": "sim-a", "provider": "sim"}],
        }))
        yield path


@pytest.fixture(scope="module")
def replicas(config_file: Path) -> Iterator[list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    with contextlib.ExitStack() as stack:
        urls = []
        for _ in range(2):
            port = free_port()
            cmd = [sys.executable, "-m", "switchyard.cli.main", "serve", "--config", str(config_file), "--port",
                   str(port), "--log-level", "warning"]
            url = f"http://127.0.0.1:{port}"
            stack.enter_context(run_process(cmd, f"{url}/health/ready", env=env, timeout=30))
            urls.append(url)
        yield urls


def ok(base: str, key: str) -> bool:
    """One call with the openai SDK: True when served, False on 401; anything else fails the test."""
    with openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, http_client=sdk_http_client()) as c:
        try:
            c.chat.completions.create(model="sim-a", messages=HI)  # type: ignore[arg-type]
        except openai.AuthenticationError:
            return False
    return True


def refused_after(base: str, key: str, since: float, limit: float = 3.0) -> float:
    """Seconds from ``since`` until ``base`` refuses ``key`` (polling every few milliseconds)."""
    while time.monotonic() - since < limit:
        if not ok(base, key):
            return time.monotonic() - since
        time.sleep(0.005)
    raise AssertionError(f"{base} still accepts the key {limit}s after its revocation")


def test_revocation_through_one_replica_reaches_the_other_within_a_second(replicas: list[str]) -> None:
    a, b = replicas
    admin = Admin(a)
    org = admin.org()
    user = admin.user(org_id=org["id"])
    latencies = []
    for _ in range(3):
        key = admin.new_key(user_id=user["id"], name=unique("k"))
        assert ok(b, key["secret"]) and ok(b, key["secret"])  # B loaded the key and serves it from its cache
        t = time.monotonic()
        admin.post(f"/admin/keys/{key['id']}/revoke", expect=200)
        assert not ok(a, key["secret"])  # the replica that revoked refuses at once
        latencies.append(refused_after(b, key["secret"], t))
    print(f"\nrevocation A -> B: {', '.join(f'{x * 1000:.0f} ms' for x in latencies)} "
          f"(median {statistics.median(latencies) * 1000:.0f} ms)")
    assert max(latencies) < 1.0
    admin.close()


def test_revocation_through_the_cli_reaches_every_replica_within_a_second(replicas: list[str],
                                                                          config_file: Path) -> None:
    a, b = replicas
    admin = Admin(a)
    org = admin.org()
    user = admin.user(org_id=org["id"])
    key = admin.new_key(user_id=user["id"])
    assert ok(a, key["secret"]) and ok(b, key["secret"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    done = subprocess.run([sys.executable, "-m", "switchyard.cli.main", "keys", "revoke", key["id"], "--config",
                           str(config_file)], capture_output=True, text=True, env=env, timeout=30)
    t = time.monotonic()  # the revocation committed before the command exited
    assert done.returncode == 0, done.stderr
    assert f"revoked {key['id']}" in done.stderr
    latencies = [refused_after(base, key["secret"], t) for base in (a, b)]
    print(f"\nrevocation CLI -> replicas: {', '.join(f'{x * 1000:.0f} ms' for x in latencies)}")
    assert max(latencies) < 1.0
    audit = admin.get("/admin/audit", org_id=org["id"], action="key.revoke")["data"]
    assert [r["actor"] for r in audit] == [f"cli:{_os_user()}"]
    admin.close()


def _os_user() -> str:
    import getpass

    return getpass.getuser()
