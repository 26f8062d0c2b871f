"""The peer gateways Switchyard is compared with, as :class:`runners.Target` s: LiteLLM's proxy and Portkey's gateway.

    bash benchmarks/peers_setup.sh                 # installs both under .tools/ (pinned, idempotent)
    python -m benchmarks.peers --check             # starts each against a fake upstream, one plain, one
                                                   # streamed and a few loadgen requests; prints time to
                                                   # ready, idle RSS, CPU per request (needs root, see below)

Each peer runs the way :class:`runners.SwitchyardTarget` runs Switchyard: a generated config, a
:class:`runners.Managed` subprocess pinned to ``GATEWAY_CORE`` with ``taskset`` (which execs, so ``process.pid`` is
the gateway's own pid: ``/proc/<pid>`` gives its CPU and RSS), a readiness URL polled until it answers 200
(``process.ready_s``), and ``url()`` / ``model()`` / ``api_key`` for the load. What is new is
:meth:`runners.Target.request_headers`: the headers a request must carry besides the API key (Portkey is told where
the upstream is by headers, not by a config file).

LiteLLM (``litellm[proxy]`` in its own venv, ``.tools/litellm-venv``): one model per fake upstream
(``openai/fake`` with ``api_base`` the fake's ``/v1``), uvicorn with one worker (``--num_workers 1``: one worker
per core, the gateway has one core), ``LITELLM_LOG=ERROR`` (which also turns uvicorn's access log off), no
database and no callbacks, ``set_verbose``/``json_logs`` off, and a master key, so that every request is
authenticated as Switchyard's are. Left alone, LiteLLM fetches its model cost map and a few other JSON files from
GitHub at start (even for ``litellm --help``); the ``LITELLM_LOCAL_*`` variables below make it use the copies it
ships (checked with strace: no connection leaves loopback, at start or serving). By default it also asks each
``api_base`` for ``GET /v1/models`` at start and every 300 s; ``disable_model_info_refresh`` keeps that out of the
measured phases. Its first request takes over a second (lazy imports): :meth:`PeerTarget.start` sends a few
priming requests after readiness, outside the time to ready.

Portkey (``@portkey-ai/gateway`` from npm, ``.tools/portkey``): ``node build/start-server.js --port=N
--headless`` with ``NODE_ENV=production`` (no log console, no UI). It listens on every interface and has no flag to
change that, so it is only started in a network namespace where loopback is the only interface: call
:func:`enter_loopback_netns` first (the ``--check`` here does), and the fake upstreams, the load generator and the
other targets then live there too. Requests carry ``x-portkey-provider: openai`` and
``x-portkey-custom-host: http://127.0.0.1:<fake port>/v1``; the ``Authorization`` header is passed on to the
upstream as its key. Its readiness URL is ``GET /`` ("AI Gateway says hey!"); it listens about 1 s before it
prints "Ready" (the banner waits on a cosmetic spinner).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import fcntl
import http.client
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from .loadgen import Workload, run_phase
from .runners import (
    GATEWAY_CORE,
    LOADGEN_CORE,
    REPO,
    Managed,
    Target,
    UpstreamSpec,
    fake_upstream,
    free_port,
    pin_self,
    sample,
)

TOOLS = REPO / ".tools"
SETUP = REPO / "benchmarks" / "peers_setup.sh"
LITELLM_VENV = TOOLS / "litellm-venv"
PORTKEY_DIR = TOOLS / "portkey"
PORTKEY_SERVER = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
STAMP = ".switchyard-stamp"


# --- installation ----------------------------------------------------------------------------------------------


def installed(peer: str) -> str | None:
    """What ``peers_setup.sh`` installed for ``peer`` ("litellm" | "portkey"), from its stamp; None if nothing."""
    stamp = (LITELLM_VENV if peer == "litellm" else PORTKEY_DIR) / STAMP
    with contextlib.suppress(OSError):
        return stamp.read_text().strip() or None
    return None


def setup(peers: tuple[str, ...] = ("litellm", "portkey")) -> None:
    """Run ``peers_setup.sh`` for ``peers`` (a no-op for those already installed at the pinned version). It needs the
    package registries, so call it before :func:`enter_loopback_netns`."""
    for peer in peers:
        subprocess.run(["bash", str(SETUP), peer], check=True, timeout=1800)


# --- a network namespace with loopback only ----------------------------------------------------------------------

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def only_loopback() -> bool:
    """True when this process's network namespace has no interface but ``lo``."""
    return {name for _, name in socket.if_nameindex()} <= {"lo"}


def loopback_up() -> None:
    """Bring ``lo`` up (a new network namespace starts with it down), as ``ip link set lo up`` does."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sh22x", b"lo", 0))
        flags = struct.unpack("16sh22x", ifr)[1]
        if not flags & IFF_UP:
            fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))


def enter_loopback_netns() -> bool:
    """Move this process into a new network namespace whose only interface is loopback (``unshare -n``), and bring
    loopback up. Everything it starts afterwards (fakes, gateways) inherits the namespace, and its own sockets (the
    load generator's) are created there too: 127.0.0.1 works as before, nothing else is reachable, and a server
    that binds every interface (Portkey) is reachable from nowhere else. Call it early, before any thread or
    subprocess is started (``unshare`` moves the calling thread only) and after anything that needs the network
    (:func:`setup`). Needs root (CAP_SYS_ADMIN); without it, run the whole command under ``unshare -rn``.
    Returns False when the process already was in such a namespace."""
    if only_loopback():
        loopback_up()
        return False
    if threading.active_count() > 1:
        raise RuntimeError("enter_loopback_netns() must run before any other thread is started")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        hint = " (needs root; or run the command under `unshare -rn`)" if err == errno.EPERM else ""
        raise OSError(err, f"unshare(CLONE_NEWNET) failed: {os.strerror(err)}{hint}")
    loopback_up()
    if not only_loopback():  # pragma: no cover - the kernel would have to have ignored the flag
        raise RuntimeError("a new network namespace still shows other interfaces")
    return True


# --- the peers ---------------------------------------------------------------------------------------------------


class PeerTarget(Target):
    """A peer gateway run as a pinned subprocess, like :class:`runners.SwitchyardTarget`."""

    ready_path = "/"
    ready_timeout = 60.0
    first_request_s: float | None = None
    primed_s: float | None = None

    def __init__(self, upstreams: dict[str, int], workdir: Path, core: int = GATEWAY_CORE) -> None:
        super().__init__(upstreams)
        self.workdir = workdir
        self.core = core
        self.port = free_port()

    def new_process(self) -> Managed:
        raise NotImplementedError

    def start(self, prime: bool = True) -> None:
        """Start, wait until ready (``process.ready_s``), then :meth:`prime` it (unless told not to)."""
        self.process = self.new_process()
        self.process.start(self.ready_timeout)
        self.first_request_s = self.primed_s = None
        if prime:
            self.prime()

    def prime(self) -> None:
        """Send one plain and one streamed chat request through each upstream, so that one-off first-request work
        (LiteLLM's takes over a second: lazy imports, client set-up) does not land in the first measured phase.
        ``first_request_s`` is the first one's latency, ``primed_s`` the time they all took."""
        assert self.process is not None
        t0 = time.perf_counter()
        for upstream in self.upstreams:
            for stream in (False, True):
                t1 = time.perf_counter()
                ok, info = _request(self, "chat/completions", upstream, stream)
                if self.first_request_s is None:
                    self.first_request_s = time.perf_counter() - t1
                if not ok:
                    raise RuntimeError(f"{self.name}: a priming request ({upstream}, stream={stream}) failed: "
                                       f"{info}; log: {self.process.log_path}")
        self.primed_s = time.perf_counter() - t0

    def url(self, endpoint: str, upstream: str) -> str:
        return f"http://127.0.0.1:{self.port}/v1/{endpoint}"

    def version(self) -> str | None:
        return None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "version": self.version(), "ready_path": self.ready_path}


class LiteLLMTarget(PeerTarget):
    """LiteLLM's proxy, ``litellm --config <generated> --num_workers 1``, its docs' settings for speed."""

    name = "litellm"
    api_key: str | None = "sk-bench-0123456789abcdef"  # the master key (LiteLLM wants keys to start with sk-)
    ready_path = "/health/readiness"  # what LiteLLM's docs give as the readiness probe; 200 once serving
    # Without these LiteLLM fetches JSON files from GitHub when it starts, and the remote model cost map is also
    # fetched on `import litellm`; with them it uses the copies in the package.
    ENV = {
        "LITELLM_LOG": "ERROR",
        "LITELLM_MODE": "PRODUCTION",  # DEV (the default) loads a .env file from the working directory
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
        "LITELLM_LOCAL_BLOG_POSTS": "True",
        "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
        "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    }

    def __init__(self, upstreams: dict[str, int], workdir: Path, core: int = GATEWAY_CORE,
                 master_key: bool = True) -> None:
        super().__init__(upstreams, workdir, core)
        self.master_key = master_key
        if not master_key:
            self.api_key = None
        self.config_path = workdir / "litellm.yaml"

    def config_text(self) -> str:
        lines = ["model_list:"]
        for name, port in self.upstreams.items():
            for endpoint, model in (("chat/completions", "fake"), ("embeddings", "fake-embed")):
                lines += [f"  - model_name: {self.model(name, endpoint)}", "    litellm_params:",
                          f"      model: openai/{model}", f"      api_base: http://127.0.0.1:{port}/v1",
                          "      api_key: sk-fake-upstream"]
        lines += ["litellm_settings:", "  set_verbose: false", "  json_logs: false",
                  "  callbacks: []", "  success_callback: []", "  failure_callback: []",
                  "general_settings:", "  disable_spend_logs: true", "  disable_error_logs: true",
                  "  disable_model_info_refresh: true"]
        if self.master_key:
            lines.append(f"  master_key: {self.api_key}")
        return "\n".join(lines) + "\n"

    def new_process(self) -> Managed:
        exe = LITELLM_VENV / "bin" / "litellm"
        if not exe.exists():
            raise RuntimeError(f"LiteLLM is not installed ({exe}): run `bash {SETUP.relative_to(REPO)} litellm`")
        self.config_path.write_text(self.config_text())
        argv = [str(exe), "--config", str(self.config_path), "--host", "127.0.0.1", "--port", str(self.port),
                "--num_workers", "1"]
        return Managed("litellm", argv, self.core, self.port, self.ready_path, self.workdir / "litellm.log",
                       env=dict(self.ENV))

    def version(self) -> str | None:
        return installed("litellm")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "env": self.ENV, "config": self.config_text()}


class PortkeyTarget(PeerTarget):
    """Portkey's gateway under Node, ``start-server.js --port=N --headless``. Only in a loopback-only network
    namespace (:func:`enter_loopback_netns`): it listens on every interface."""

    name = "portkey"
    api_key = "sk-fake-upstream"  # Portkey passes Authorization on to the upstream; it checks no key itself
    ready_path = "/"
    ENV = {"NODE_ENV": "production"}

    def new_process(self) -> Managed:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("Portkey needs node (apt-get install nodejs npm)")
        if not PORTKEY_SERVER.exists():
            raise RuntimeError(f"Portkey is not installed ({PORTKEY_SERVER}): "
                               f"run `bash {SETUP.relative_to(REPO)} portkey`")
        if not only_loopback():
            raise RuntimeError("Portkey listens on every interface: start it only in a loopback-only network "
                               "namespace (call benchmarks.peers.enter_loopback_netns() first, or run the "
                               "command under `unshare -n`)")
        argv = [node, str(PORTKEY_SERVER), f"--port={self.port}", "--headless"]
        return Managed("portkey", argv, self.core, self.port, self.ready_path, self.workdir / "portkey.log",
                       env=dict(self.ENV))

    def request_headers(self, upstream: str) -> dict[str, str]:
        return {"x-portkey-provider": "openai",
                "x-portkey-custom-host": f"http://127.0.0.1:{self.upstreams[upstream]}/v1"}

    def version(self) -> str | None:
        return installed("portkey")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "env": self.ENV, "node": _node_version()}


PEERS: dict[str, type[PeerTarget]] = {"litellm": LiteLLMTarget, "portkey": PortkeyTarget}


def workload(target: Target, endpoint: str, upstream: str, stream: bool = False) -> Workload:
    """The load generator's request for ``target``, with the peer's extra headers (what ``phases.workload`` builds,
    plus :meth:`runners.Target.request_headers`)."""
    url, model = target.url(endpoint, upstream), target.model(upstream, endpoint)
    w = (Workload.embeddings(url, model, target.api_key) if endpoint == "embeddings"
         else Workload.chat(url, model, target.api_key, stream))
    w.headers.update(target.request_headers(upstream))
    return w


def _node_version() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    return None


# --- the check ---------------------------------------------------------------------------------------------------


def _request(target: Target, endpoint: str, upstream: str, stream: bool) -> tuple[bool, str]:
    """One request through ``target`` with http.client (independent of the load generator); ok and a summary."""
    w = workload(target, endpoint, upstream, stream)
    url = w.url.split("://", 1)[1]
    hostport, path = url.split("/", 1)
    host, port = hostport.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        t0 = time.perf_counter()
        conn.request("POST", "/" + path, body=w.body, headers=w.headers)
        resp = conn.getresponse()
        body = resp.read()
        ms = 1000 * (time.perf_counter() - t0)
    finally:
        conn.close()
    if resp.status != 200:
        return False, f"HTTP {resp.status}: {body[:300]!r}"
    if not stream:
        doc = orjson.loads(body)
        if endpoint == "embeddings":
            n = len(doc["data"][0]["embedding"])
            return n > 0, f"{n}-dim embedding, {ms:.1f} ms"
        text = doc["choices"][0]["message"]["content"] or ""
        return bool(text), f"{len(text)} chars, {ms:.1f} ms"
    events = [line[6:] for line in body.decode().split("\n") if line.startswith("data: ")]
    chunks = [orjson.loads(e) for e in events if e != "[DONE]"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    usage = any(c.get("usage") for c in chunks)
    ok = bool(events) and events[-1] == "[DONE]" and bool(text)
    return ok, f"{len(chunks)} chunks, {len(text)} chars, usage={'yes' if usage else 'no'}, [DONE], {ms:.1f} ms"


def check(peers: list[str], startups: int, load_s: float) -> int:
    pin_self(LOADGEN_CORE)
    workdir = Path(tempfile.mkdtemp(prefix="switchyard-peers-"))
    failures = 0
    fake = fake_upstream(UpstreamSpec("0ms", 0.0, chunks=16), workdir)
    try:
        fake.start()
        ups = {"0ms": fake.port}
        for name in peers:
            target = PEERS[name](ups, workdir)
            print(f"{name} ({target.version() or 'not installed'})", flush=True)
            try:
                target.start(prime=False)
            except RuntimeError as e:
                print(f"  FAILED to start: {e}")
                failures += 1
                continue
            try:
                assert target.process is not None
                pid = target.process.pid
                time.sleep(1.0)  # let start-up work (schedulers, GC) settle before the idle sample
                idle = sample(pid)
                print(f"  ready in {target.process.ready_s:.2f} s (spawn to first 200 from "
                      f"{target.ready_path}); idle RSS {idle.rss_kb / 1024:.0f} MiB, "
                      f"start-up peak {idle.peak_kb / 1024:.0f} MiB, start-up CPU {idle.cpu_s:.2f} s; pid {pid}")
                print(f"  command: {' '.join(target.process.argv)}")
                try:
                    target.prime()
                except (RuntimeError, OSError, ValueError, KeyError, http.client.HTTPException) as e:
                    print(f"  FAILED: {e}")
                    failures += 1
                    continue
                print(f"  first request {1000 * (target.first_request_s or 0):.0f} ms; plain + streamed chat "
                      f"(priming) {1000 * (target.primed_s or 0):.0f} ms")
                for endpoint, stream in (("chat/completions", False), ("chat/completions", True),
                                         ("embeddings", False)):
                    label = "embeddings" if endpoint == "embeddings" else ("stream" if stream else "plain")
                    try:
                        ok, info = _request(target, endpoint, "0ms", stream)
                    except (OSError, ValueError, KeyError, IndexError, http.client.HTTPException) as e:
                        ok, info = False, f"{type(e).__name__}: {e}"
                    failures += not ok
                    print(f"  {label:<10} {'ok' if ok else 'FAILED'}  {info}")
                if load_s > 0:
                    for stream in (False, True):
                        w = workload(target, "chat/completions", "0ms", stream)
                        marks: dict[str, float] = {}

                        def mark(which: str, pid: int = pid, marks: dict[str, float] = marks) -> None:
                            marks[which] = sample(pid).cpu_s

                        res = run_phase(w, "closed", concurrency=8, duration=load_s, warmup=0.5,
                                        max_requests=20_000, timeout_s=10.0, mark=mark)
                        cpu_ms = 1000 * (marks["end"] - marks["start"]) / max(res.sent, 1)
                        failures += res.errors > 0 or res.ok == 0
                        print(f"  loadgen {'stream' if stream else 'plain '} {res.line()}  "
                              f"({cpu_ms:.2f} ms CPU/req)" + (f" {res.error_kinds}" if res.errors else ""))
                    print(f"  after load: RSS {sample(pid).rss_kb / 1024:.0f} MiB, peak "
                          f"{sample(pid).peak_kb / 1024:.0f} MiB")
            finally:
                target.stop()
            for i in range(1, startups):
                m = target.new_process()
                try:
                    m.start(target.ready_timeout)
                    print(f"  start-up {i + 1}: ready in {m.ready_s:.2f} s, RSS at ready "
                          f"{sample(m.pid).rss_kb / 1024:.0f} MiB")
                finally:
                    m.stop()
    finally:
        fake.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print("peers: all ok" if not failures else f"peers: {failures} failure(s)")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="start each peer against a fake upstream and send requests")
    ap.add_argument("--only", choices=sorted(PEERS), action="append", help="just this peer (repeatable)")
    ap.add_argument("--no-setup", action="store_true", help="do not run peers_setup.sh first")
    ap.add_argument("--startups", type=int, default=1, help="start each peer this many times (time to ready)")
    ap.add_argument("--load", type=float, default=1.0, metavar="SECONDS",
                    help="closed-loop load (8 connections) through each peer after the requests; 0: none")
    ap.add_argument("--host-netns", action="store_true",
                    help="stay in this network namespace (Portkey is then skipped)")
    a = ap.parse_args(argv)
    if not a.check:
        ap.print_help()
        return 2
    peers = a.only or list(PEERS)
    if not a.no_setup:
        setup(tuple(peers))
    if a.host_netns:
        if "portkey" in peers and not only_loopback():
            print("portkey: skipped (it listens on every interface; not started outside a loopback-only namespace)")
            peers.remove("portkey")
    else:
        entered = enter_loopback_netns()
        print("network: " + ("entered a new namespace with loopback only" if entered
                             else "already in a namespace with loopback only"), flush=True)
    return check(peers, max(1, min(a.startups, 10)), min(max(a.load, 0.0), 30.0))


if __name__ == "__main__":
    sys.exit(main())
