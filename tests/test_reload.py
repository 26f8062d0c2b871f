"""Live reload of the config file: ``POST /admin/config/reload`` and ``SIGHUP`` (issue 12, item 7).

Over HTTP: a reload that adds a deployment makes it callable, one that removes it makes it 404; a file that fails
``switchyard check`` is refused with check's own messages and the old configuration keeps serving; a call in flight
on a deployment a reload removes completes; load held through 20 reloads loses nothing; reloads are audited (and a
member's attempt is a denial); SIGHUP reloads ``switchyard serve``, every worker of ``--workers 2``.
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import yaml

from switchyard.config import load_config
from switchyard.server.factory import build
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import MASTER_KEY, USER_KEY
from tests.support.governance import Admin, gov_config, no_keepalive_client, sdk_http_client
from tests.support.servers import free_port, run_process, serve_asgi

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
RELOAD = "/admin/config/reload"
EXTRA = {"name": "sim-extra", "provider": "sim"}


@contextlib.contextmanager
def served(tmp_path: Path, cfg: dict[str, Any]) -> Iterator[tuple[str, Path, Any]]:
    """The gateway of ``cfg`` written to a file, as ``switchyard serve`` builds it (with the file to reload)."""
    path = tmp_path / "switchyard.yaml"
    write(path, cfg)
    app = build(load_config(path), config_path=str(path))
    with serve_asgi(app) as url:
        yield url, path, app.state.gateway


def write(path: Path, cfg: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    tmp.replace(path)  # atomic: a reader never sees half a file


def config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    return gov_config(f"sqlite:///{tmp_path}/gov.db", **overrides)


def chat(http: httpx.Client, model: str, key: str = USER_KEY) -> httpx.Response:
    return http.post("/v1/chat/completions", json={"model": model, **CHAT},
                     headers={"authorization": f"Bearer {key}"})


def test_reload_adds_and_removes_deployments_and_refuses_a_bad_file(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    with served(tmp_path, cfg) as (url, path, gw), no_keepalive_client(url) as http:
        admin = Admin(url)
        assert chat(http, "sim-extra").status_code == 404

        added = copy.deepcopy(cfg)
        added["deployments"].append(EXTRA)
        added["routes"]["fast"]["targets"] = ["sim-a", "sim-extra"]
        write(path, added)
        summary = admin.call("POST", RELOAD)
        assert summary == {"generation": 1, "added": ["sim-extra"], "removed": [], "changed": []}
        with openai.OpenAI(base_url=url + "/v1", api_key=USER_KEY, max_retries=0,
                           http_client=sdk_http_client()) as client:
            reply = client.chat.completions.with_raw_response.create(model="sim-extra", **CHAT)  # type: ignore[arg-type]
            assert reply.headers["x-switchyard-deployment"] == "sim-extra"
            assert "sim-extra" in {m.id for m in client.models.list()}

        # a route naming an unknown deployment: refused with `switchyard check`'s words; the old config serves on
        bad = copy.deepcopy(added)
        bad["routes"]["fast"]["targets"] = ["sim-a", "sim-nowhere"]
        write(path, bad)
        r = admin.request("POST", RELOAD)
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        check = subprocess.run([sys.executable, "-m", "switchyard.cli.main", "check", str(path)],
                               capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
        assert check.returncode == 2
        assert "sim-nowhere" in check.stderr
        assert err["message"] == check.stderr.strip()
        assert (err["param"], err["code"]) == ("config", "invalid_config")
        assert chat(http, "sim-extra").status_code == 200
        assert gw.gen.number == 1

        # a key that does not reload is named, and refused
        frozen = copy.deepcopy(added)
        frozen["server"] = {"port": 4999}
        write(path, frozen)
        r = admin.request("POST", RELOAD)
        assert r.status_code == 400
        assert "server: changed, but it does not reload" in r.json()["error"]["message"]

        # removing it: 404 for the deployment, the route serves on without it
        removed = copy.deepcopy(cfg)
        removed["deployments"][0]["price"] = {"input": 3.0, "output": 4.0}
        write(path, removed)
        summary = admin.call("POST", RELOAD)
        assert summary == {"generation": 2, "added": [], "removed": ["sim-extra"], "changed": ["sim-a"]}
        r = chat(http, "sim-extra")
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        assert chat(http, "fast").status_code == 200

        # the same file again: nothing changes, no new generation
        assert admin.call("POST", RELOAD)["generation"] == 2
        admin.close()


def test_breaker_state_survives_a_reload(tmp_path: Path) -> None:
    with served(tmp_path, config(tmp_path)) as (url, path, gw):
        health = gw.router.health
        kept = health.get("sim-a", "chat")
        kept.state = "open"  # its state, as the breaker left it
        cfg = config(tmp_path)
        cfg["deployments"].append(EXTRA)
        write(path, cfg)
        Admin(url).call("POST", RELOAD)
        assert gw.router.health is health
        assert health.get("sim-a", "chat") is kept and kept.state == "open"
        assert health.get("sim-extra", "chat").state == "closed"


def test_a_call_in_flight_finishes_on_a_deployment_the_reload_removes(tmp_path: Path,
                                                                       fake_openai: FakeOpenAI) -> None:
    cfg = config(tmp_path)
    cfg["providers"]["up"] = {"type": "openai", "base_url": str(fake_openai.base_url) + "/v1", "api_key": "sk-upstream"}
    cfg["deployments"].append({"name": "slow", "provider": "up", "model": "gpt-4o-mini"})
    with served(tmp_path, cfg) as (url, path, gw), no_keepalive_client(url) as http:
        http.timeout = httpx.Timeout(60)
        fake_openai.hang_next(2.0)
        got: list[httpx.Response] = []
        caller = threading.Thread(target=lambda: got.append(chat(http, "slow")))
        caller.start()
        deadline = time.monotonic() + 30
        while not fake_openai.requests and time.monotonic() < deadline:  # the call reached the upstream
            time.sleep(0.01)
        assert fake_openai.requests
        old = gw.gen
        provider = old.catalog.providers["up"]
        write(path, config(tmp_path))  # without the provider and its deployment
        assert Admin(url).call("POST", RELOAD)["removed"] == ["slow"]
        assert old.inflight == 1 and gw.gen is not old  # the call runs on, on the generation it started with
        caller.join(60)
        assert got and got[0].status_code == 200, got and got[0].text
        assert old.inflight == 0
        assert chat(http, "slow").status_code == 404
        deadline = time.monotonic() + 30
        while gw.reloader._closing and time.monotonic() < deadline:  # the provider closes once its call is done
            time.sleep(0.01)
        assert provider not in gw.gen.catalog.providers.values()


def test_load_through_twenty_reloads_loses_nothing(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    with served(tmp_path, cfg) as (url, path, gw):
        statuses: list[int] = []
        errors: list[str] = []
        reloading_done = threading.Event()

        def load() -> None:
            with no_keepalive_client(url) as http:
                while len(statuses) < 200 or not reloading_done.is_set():
                    if len(statuses) >= 5000:
                        break
                    try:
                        r = chat(http, "fast")
                        statuses.append(r.status_code)
                        if r.status_code != 200:
                            errors.append(r.text)
                    except httpx.HTTPError as e:  # a dropped request
                        statuses.append(0)
                        errors.append(repr(e))

        threads = [threading.Thread(target=load) for _ in range(2)]
        for t in threads:
            t.start()
        admin = Admin(url)
        during = []
        for i in range(20):
            variant = copy.deepcopy(cfg)
            if i % 2 == 0:
                variant["deployments"].append(EXTRA)
            write(path, variant)
            before = len(statuses)
            summary = admin.call("POST", RELOAD)
            assert summary["added" if i % 2 == 0 else "removed"] == ["sim-extra"]
            during.append(len(statuses) - before)
            time.sleep(0.02)
        reloading_done.set()
        for t in threads:
            t.join(120)
        admin.close()
        assert gw.gen.number == 20
        assert not errors, errors[:3]
        assert len(statuses) >= 200 and set(statuses) == {200}
        assert sum(during) > 0  # requests were in flight while reloading


def test_reloads_are_audited_and_members_refused(tmp_path: Path) -> None:
    with served(tmp_path, config(tmp_path)) as (url, path, _gw):
        admin = Admin(url)
        org = admin.org()
        _, member = admin.user_with_key("member", org_id=org["id"])
        org_admin_user, org_admin = admin.user_with_key("org_admin", org_id=org["id"])

        r = admin.as_key(member).request("POST", RELOAD)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"

        cfg = config(tmp_path)
        cfg["deployments"].append(EXTRA)
        write(path, cfg)
        assert admin.as_key(org_admin).call("POST", RELOAD)["added"] == ["sim-extra"]
        cfg["routes"]["fast"]["targets"] = ["sim-nowhere"]
        write(path, cfg)
        assert admin.request("POST", RELOAD).status_code == 400

        rows = admin.get("/admin/audit", limit=1000, action="config.reload")["data"]
        denied = {x["status"]: x for x in rows if x["decision"] == "deny"}
        allowed = [x for x in rows if x["decision"] == "allow"]
        assert sorted(denied) == [400, 403] and {x["kind"] for x in denied.values()} == {"admin"}
        assert "unknown deployment 'sim-nowhere'" in denied[400]["reason"] and denied[400]["actor"] == "master"
        assert len(allowed) == 1
        entry = allowed[0]
        assert entry["kind"] == "admin" and entry["actor_user_id"] == org_admin_user["id"]
        assert entry["details"]["added"] == ["sim-extra"] and entry["details"]["generation"] == 1
        assert entry["org_id"] == org["id"]
        admin.close()


def test_admin_reload_without_a_file_is_503(tmp_path: Path) -> None:
    from tests.support.gateway import run_gateway

    with run_gateway(config(tmp_path)) as running:
        r = httpx.post(running.url + RELOAD, headers={"authorization": f"Bearer {MASTER_KEY}"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "reload_unavailable"


# --- switchyard serve ------------------------------------------------------------------------------------------------


def serve_config(extra: bool, **over: Any) -> dict[str, Any]:
    deployments: list[dict[str, Any]] = [{"name": "sim-a", "provider": "sim"}]
    if extra:
        deployments.append(EXTRA)
    cfg: dict[str, Any] = {"master_key": MASTER_KEY, "keys": [{"key": USER_KEY, "name": "user"}],
                           "store": "sqlite:///gateway.db", "providers": {"sim": {"type": "simulated"}},
                           "deployments": deployments, "governance": {"enabled": False}}
    cfg.update(over)
    return cfg


def models(base: str) -> set[str]:
    with httpx.Client(timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as http:
        r = http.get(base + "/v1/models", headers={"authorization": f"Bearer {USER_KEY}"})
        return {m["id"] for m in r.json()["data"]}


def both_up(base: str) -> None:
    """Both workers answer (each has its pid in /health/live)."""
    pids: set[int] = set()
    deadline = time.monotonic() + 60
    while len(pids) < 2 and time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            pids.add(httpx.get(base + "/health/live", timeout=10).json()["pid"])
    assert len(pids) == 2


def wait_all_see(base: str, name: str, present: bool, in_a_row: int = 30) -> None:
    """Until ``in_a_row`` fresh connections in a row (spread across the workers by the kernel) agree."""
    deadline = time.monotonic() + 60
    streak = 0
    while streak < in_a_row:
        assert time.monotonic() < deadline, f"workers still disagree about {name}"
        streak = streak + 1 if (name in models(base)) == present else 0
        if streak == 0:
            time.sleep(0.1)


def test_sighup_reloads_serve_and_every_worker(tmp_path: Path) -> None:
    for workers in (1, 2):
        path = tmp_path / f"serve-{workers}.yaml"
        write(path, serve_config(False))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "switchyard.cli.main", "serve", "--config", str(path), "--port", str(port),
               "--workers", str(workers)]
        with run_process(cmd, f"{base}/health/ready", cwd=tmp_path, timeout=60) as proc:
            if workers == 2:
                both_up(base)
            assert "sim-extra" not in models(base)
            write(path, serve_config(True))
            os.kill(proc.proc.pid, signal.SIGHUP)
            wait_all_see(base, "sim-extra", True)
            write(path, serve_config(False, routes={"fast": {"targets": ["sim-nowhere"]}}))
            os.kill(proc.proc.pid, signal.SIGHUP)  # refused: logged, the old configuration keeps serving
            deadline = time.monotonic() + 60
            while proc.output().count("config reload by signal:SIGHUP refused") < workers:  # each worker refuses
                assert time.monotonic() < deadline, proc.output()[-2000:]
                time.sleep(0.05)
            assert "sim-extra" in models(base)
            write(path, serve_config(False))
            os.kill(proc.proc.pid, signal.SIGHUP)
            wait_all_see(base, "sim-extra", False)
            os.killpg(proc.proc.pid, signal.SIGTERM)
            proc.proc.wait(30)
            out = proc.output()
        assert "routes.fast.targets[0]: unknown deployment 'sim-nowhere'" in out, out[-2000:]
        assert out.count("config reloaded by signal:SIGHUP: generation 2, added -, removed ['sim-extra']") == workers


def test_an_admin_reload_on_one_worker_reloads_every_worker(tmp_path: Path) -> None:
    from tests.support.ledger import redis_prefix, redis_url

    with redis_prefix() as prefix:
        over = {"store": f"sqlite:///{tmp_path}/gov.db", "governance": {"poll_interval": 0.2},
                "ledger": {"redis": redis_url(), "key_prefix": prefix}}
        path = tmp_path / "serve.yaml"
        write(path, serve_config(False, **over))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "switchyard.cli.main", "serve", "--config", str(path), "--port", str(port),
               "--workers", "2"]
        with run_process(cmd, f"{base}/health/ready", cwd=tmp_path, timeout=60) as proc:
            both_up(base)  # /health/ready answered from one; the other reloads too, but audits only once up
            admin = Admin(base)
            write(path, serve_config(True, **over))
            assert admin.call("POST", RELOAD)["added"] == ["sim-extra"]  # one worker answers ...
            wait_all_see(base, "sim-extra", True)  # ... and both serve it
            deadline = time.monotonic() + 60
            while True:  # each worker audits its reload just after its swap
                rows = admin.get("/admin/audit", limit=1000, action="config.reload")["data"]
                actors = sorted(r["actor"] for r in rows if r["decision"] == "allow")
                if len(actors) >= 2 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert len(actors) == 2 and actors[1] == "signal:SIGHUP", (actors, proc.output()[-3000:])  # the other one
            assert len({r["details"]["pid"] for r in rows}) == 2
            admin.close()
            os.killpg(proc.proc.pid, signal.SIGTERM)
            proc.proc.wait(30)
