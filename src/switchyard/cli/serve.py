"""``switchyard serve``: one process, or N worker processes sharing one port (SO_REUSEPORT).

With ``--workers N`` the parent migrates the store once, then starts N children that each bind the port with
SO_REUSEPORT, so the kernel spreads connections across them. The parent only supervises: it forwards SIGTERM and
SIGINT, and restarts a child that dies unexpectedly (with a back-off, so a crash loop does not spin). SIGHUP reloads
the config file (:mod:`switchyard.reload`): the supervisor forwards it to every worker, and a worker that reloads
through ``POST /admin/config/reload`` sends it to the supervisor, so every worker reloads from the same file.
State that must be exact across workers (budgets, rate limits) lives in the shared store and, when configured, Redis.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import click

from ..config import Config, default_config_path

log = logging.getLogger("switchyard.serve")


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        _cannot_bind(host, port, e)
    sock.set_inheritable(True)
    return sock


def _cannot_bind(host: str, port: int, e: OSError) -> None:
    """Say in one line why the address cannot be had, and what to do; exit 2 (a supervisor does not retry it)."""
    if e.errno == errno.EADDRINUSE:
        why = (f"port {port} on {host} is in use (another Switchyard, or another server): stop it, or serve on "
               "another port with --port N (or server.port)")
    elif e.errno == errno.EACCES:
        why = f"port {port} needs privileges to bind: use a port above 1023 with --port N (or server.port)"
    elif e.errno in (errno.EADDRNOTAVAIL, socket.EAI_NONAME) or isinstance(e, socket.gaierror):
        why = f"{host!r} is not an address of this machine: use --host 127.0.0.1, 0.0.0.0 or one of its own"
    else:
        why = f"cannot listen on {host}:{port}: {e.strerror or e}"
    click.secho(f"error: {why}", fg="red", err=True)
    sys.exit(2)


def _check_port(host: str, port: int) -> None:
    """Bind the address once before anything starts (the store, the providers, the workers), so a port in use is
    one clear line at once rather than a failure after start-up (or a supervisor restarting workers that cannot
    bind). The gateway binds it again for real a moment later."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        _cannot_bind(host, port, e)
        return
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no clash
        try:
            sock.bind(addr)
        except OSError as e:
            _cannot_bind(host, port, e)


def _accepting(host: str, port: int) -> bool:
    """Something accepts connections on the address (a worker has bound it and started)."""
    target = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    try:
        socket.create_connection((target, port), timeout=0.25).close()
        return True
    except OSError:
        return False


#: keys that are public by design (the quickstart's documented demo key): the banner may print them whole
PUBLIC_KEYS = frozenset({"sk-switchyard-quickstart"})


def _banner(cfg: Config, host: str, port: int, store: Any, workers: int, deployments: dict[str, Any],
            routes: dict[str, Any]) -> None:
    """What a new user needs, printed once the port is bound: where, with which key, what answers (real or
    simulated), a request to copy, and how to reach the admin API."""
    suffix = f", {workers} workers" if workers > 1 else ""
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    base = f"http://{shown}:{port}"
    click.echo(click.style("Switchyard", bold=True) + " listening on " + click.style(base, fg="cyan")
               + f" (OpenAI base URL: {base}/v1, Anthropic base URL: {base}{suffix})")
    click.echo(f"store: {store!r}")

    def kind(d: Any) -> str:
        return "simulated" if getattr(d.provider, "type", "") == "simulated" else "real"

    for name, d in deployments.items():
        click.echo(f"  deployment {click.style(name, fg='green')} -> {d.provider_name}/{d.target.model} ({kind(d)})")
    for name, r in routes.items():
        kinds = {kind(t) for t in r.targets}
        label = kinds.pop() if len(kinds) == 1 else "real and simulated"
        click.echo(f"  route {click.style(name, fg='green')} -> {', '.join(t.name for t in r.targets)} ({label})")
    disabled = [n for n, p in cfg.providers.items() if not p.enabled]
    if disabled:
        click.secho(f"  disabled providers (set their key to enable them): {', '.join(disabled)}", dim=True)
    if deployments and all(kind(d) == "simulated" for d in deployments.values()):
        click.secho("  every answer is simulated: no provider key is set", fg="yellow")
    key = cfg.keys[0].key if cfg.keys else None
    shown_key = key or "<a virtual key: switchyard keys create --user EMAIL>"
    if key and key not in PUBLIC_KEYS:  # a secret never reaches the output: its first and last characters only
        shown_key = "$SWITCHYARD_KEY"
        click.echo(f"key: {key[:6]}…{key[-4:]} (static key {cfg.keys[0].name!r} from the config; below as "
                   "$SWITCHYARD_KEY)")
    elif key:
        click.echo(f"key: {click.style(key, bold=True)} (static key {cfg.keys[0].name!r} from the config)")
    elif cfg.master_key:
        click.echo("key: the master key, or a virtual key (switchyard keys create --user EMAIL)")
        shown_key = "$SWITCHYARD_MASTER_KEY"
    else:
        click.echo("key: none configured yet: create one with  switchyard keys create --user EMAIL")
    model = next(iter(routes), None) or next((n for n, d in deployments.items() if "chat" in d.capabilities), "MODEL")
    click.echo("try it:")
    click.echo(f"  curl -s {base}/v1/chat/completions -H 'Authorization: Bearer {shown_key}' \\\n"
               f"    -H 'Content-Type: application/json' -d '{{\"model\": \"{model}\", \"messages\": "
               f"[{{\"role\": \"user\", \"content\": \"Hello\"}}]}}'")
    click.echo(f"  python -c \"from openai import OpenAI; c = OpenAI(base_url='{base}/v1', api_key='{shown_key}'); "
               f"print(c.chat.completions.create(model='{model}', messages=[{{'role': 'user', 'content': "
               f"'Hello'}}]).choices[0].message.content)\"")
    if not cfg.governance.enabled or not cfg.governance.admin.enabled:
        click.echo("admin API: off (set governance.enabled and governance.admin.enabled)")
    elif cfg.master_key:
        click.echo(f"admin API: {base}/admin with the master key as bearer (docs: {base}/admin/openapi.json)")
    else:
        click.echo("admin API: set master_key (e.g. SWITCHYARD_MASTER_KEY=... in the quickstart) to call "
                   f"{base}/admin, or use the CLI (switchyard keys|teams|budgets ...)")


def check_secrets(cfg: Config, config_path: str) -> None:
    """A key secret or audit key from the environment that is too short: one line naming it, exit 2."""
    if not cfg.governance.enabled:
        return
    from ..governance.keys import audit_key, key_secret

    for check, what in ((key_secret, "it keys the stored hashes of virtual keys"),
                        (audit_key, "it signs the audit log")):
        try:
            check(cfg)
        except ValueError as e:
            click.secho(f"{config_path}: {e} ({what}): use a long random string", fg="red", err=True)
            sys.exit(2)


def _require_key_secret(cfg: Config, config_path: str, store: Any) -> None:
    """Refuse to start, in plain words, when the store holds virtual keys that no configured secret can check."""
    if not cfg.governance.enabled:
        return
    from ..governance.keys import key_secret
    from ..governance.principals import count_keys
    from ..store.db import normalize_url

    check_secrets(cfg, config_path)
    if key_secret(cfg) is not None:
        return
    try:
        with store.engine.connect() as conn:
            n = count_keys(conn)
    except Exception:  # an unreachable store is reported by the gateway itself
        return
    if n:
        keys = f"{n} virtual key" + ("s" if n != 1 else "")
        click.secho(f"{config_path}: the store holds {keys}, but no key secret is configured", fg="red",
                    err=True)
        click.echo("  Virtual keys are checked against HMACs made with the secret they were created under. Set it "
                   "as SWITCHYARD_KEY_SECRET (or governance.key_secret), or set SWITCHYARD_MASTER_KEY (master_key) "
                   "to the master key they were created under; or point store at another database (this one: "
                   f"{normalize_url(store.url).render_as_string(hide_password=True)}).", err=True)
        sys.exit(2)


def _open_store(cfg: Config, config_path: str, *, migrate: bool) -> Any:
    """The store, migrated in a child interpreter if it needs it (no Alembic in the serving process); a store that
    cannot be opened is said in one line, not a traceback."""
    from ..store import Store
    from ..store.db import normalize_url

    try:
        return Store.open(cfg.store, run_migrations=migrate, isolated=True)
    except Exception as e:
        where = normalize_url(cfg.store).render_as_string(hide_password=True)
        first = (str(e).strip().splitlines() or [""])[0][:300]
        password = normalize_url(cfg.store).password
        if password:
            first = first.replace(str(password), "***")
        click.secho(f"{config_path}: cannot open the store {where}", fg="red", err=True)
        click.echo(f"  {type(e).__name__}: {first}", err=True)
        sys.exit(1)


_early_sighup: list[bool] = []  # a SIGHUP that came while the process started, before its gateway listens


def _defer_sighup(*, remember: bool) -> None:
    """From the first moment, a SIGHUP must not end the process (its default): a worker remembers it (and
    reloads once started: the file may have changed after it was read); the supervisor ignores it until it has
    workers to forward it to (they read the file after it anyway)."""
    signal.signal(signal.SIGHUP, (lambda _s, _f: _early_sighup.append(True)) if remember else signal.SIG_IGN)


def _catalog(cfg: Config, config_path: str, catalog_type: Any) -> Any:
    try:
        return catalog_type.from_config(cfg)
    except ValueError as e:  # a provider that cannot be built (a missing extra, a bad region): the config's fault
        click.secho(f"{config_path}: invalid configuration", fg="red", err=True)
        click.echo(f"  {e}", err=True)
        sys.exit(2)


def run_worker(cfg: Config, config_path: str, host: str, port: int, *, migrate: bool, quiet: bool,
               reuse_port: bool) -> None:
    """Serve in this process until SIGTERM or SIGINT; SIGHUP reloads the config file."""
    import uvicorn

    from .. import background
    from ..catalog import Catalog
    from ..governance.spend import SpendWriter
    from ..server.factory import build

    catalog = _catalog(cfg, config_path, Catalog)
    # The batch threads run below the loop's priority (see switchyard.background); a thread that holds the GIL
    # when the loop wants it back gives it up within this interval (the default, 5 ms, showed in the p99).
    sys.setswitchinterval(0.0005)
    background.configure(cfg.server.background_priority)
    store = _open_store(cfg, config_path, migrate=migrate)
    _require_key_secret(cfg, config_path, store)
    writer = SpendWriter.for_config(cfg, store.engine)  # the request log, through the durable spend spool
    app = build(cfg, catalog=catalog, recorder=writer, store=store, freeze_gc=True, config_path=config_path)
    reloader = app.state.gateway.reloader
    reloader.listen(pending=_early_sighup.pop() if _early_sighup else False)
    if reuse_port:  # a worker of `serve --workers N`: a reload through the admin API reloads every worker
        supervisor = os.getppid()
        reloader.notify = lambda: os.kill(supervisor, signal.SIGHUP)
    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and not quiet:  # the port is bound and the app started: only now say where
                _banner(cfg, host, port, store, 1, catalog.deployments, catalog.routes)

    server = Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                   lifespan="on", ws="none"))
    try:
        if reuse_port:
            server.run(sockets=[_reuse_port_socket(host, port)])
        else:
            server.run()
    finally:
        store.close()


def run_supervisor(cfg: Config, config_path: str, host: str, port: int, workers: int, log_level: str) -> None:
    """Start ``workers`` children on one port and keep them running until told to stop."""
    from ..catalog import Catalog

    catalog = _catalog(cfg, config_path, Catalog)
    store = _open_store(cfg, config_path, migrate=True)  # migrate once, here, before any worker opens the store
    _require_key_secret(cfg, config_path, store)
    store.close()
    cmd = [sys.executable, "-m", "switchyard.cli.main", "serve", "--config", config_path, "--host", host,
           "--port", str(port), "--log-level", log_level, "--worker-child"]
    metrics_dir = _metrics_dir(cfg)

    def started() -> bool:  # the banner once, after a worker has bound the port and started: as with one process
        if not _accepting(host, port):
            return False
        _banner(cfg, host, port, store, workers, catalog.deployments, catalog.routes)
        return True

    try:
        _supervise(cmd, workers, started)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _metrics_dir(cfg: Config) -> str | None:
    """Prometheus's multiprocess mode: a fresh directory for the workers' metric files (they inherit
    ``PROMETHEUS_MULTIPROC_DIR``), removed when the supervisor ends. One set by the operator is kept."""
    if not cfg.metrics.enabled or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    path = tempfile.mkdtemp(prefix="switchyard-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def _worker_gone(pid: int) -> None:
    """A worker exited: drop its live gauges (in-flight calls, spool backlog) from the sums."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


#: a worker's exit code that no restart can mend (the config, the store or the port): the supervisor stops
FATAL = 2


def _supervise(cmd: list[str], workers: int, started: Any = None) -> None:
    """Keep ``workers`` children running; ``started()`` is polled until it returns True (the banner). A child that
    exits with :data:`FATAL` has said why on stderr: every worker is stopped, and so is the supervisor (exit 2)."""
    children: list[subprocess.Popen[bytes] | None] = [None] * workers
    restarts = [0.0] * workers
    stopping = False
    fatal = False

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for c in children:
            if c is not None and c.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    c.send_signal(signum)

    def reload(_signum: int, _frame: Any) -> None:
        for c in children:
            if c is not None and c.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    c.send_signal(signal.SIGHUP)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    while True:
        for i, c in enumerate(children):
            if stopping:
                break
            if c is None or c.poll() is not None:
                if c is not None and c.returncode == FATAL:
                    fatal = True
                    stop(signal.SIGTERM, None)
                    break
                if c is not None:
                    log.warning("worker %d exited with %s; restarting", i, c.returncode)
                    _worker_gone(c.pid)
                    time.sleep(min(5.0, max(0.0, restarts[i] + 1.0 - time.monotonic())))
                restarts[i] = time.monotonic()
                # its slot, kept across restarts: a restarted worker recovers its own workflow runs (DBOS)
                env = {**os.environ, "SWITCHYARD_WORKER_INDEX": str(i)}
                children[i] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, env=env)
        if stopping:
            break
        if started is not None and started():
            started = None
        time.sleep(0.2 if started is None else 0.05)
    deadline = time.monotonic() + 30
    for c in children:
        if c is not None:
            try:
                c.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                c.kill()
    if fatal:
        sys.exit(FATAL)


def _require_shared_ledger(cfg: Config, config_path: str, workers: int) -> None:
    """Refuse ``--workers N`` with governance on and no ``ledger.redis``: each worker would enforce budgets and
    rate limits on its own, so N workers could let through N times a budget. Exact or nothing."""
    from ..governance.keys import key_secret

    if not cfg.governance.enabled or cfg.ledger.redis is not None:
        return
    try:
        on = key_secret(cfg) is not None
    except ValueError:  # a key secret is set, just too short: virtual keys are meant to be on
        on = True
    if on:
        click.secho(f"{config_path}: --workers {workers} needs ledger.redis", fg="red", err=True)
        click.echo("  With virtual keys on (master_key, governance.key_secret or $SWITCHYARD_KEY_SECRET is set), "
                   "budgets and rate limits must be shared by the workers, or each worker would enforce its own "
                   "copy. Configure ledger.redis, or run one worker.", err=True)
        sys.exit(2)


BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def single_threaded_blas() -> None:
    """The gateway's BLAS runs on one thread unless the operator set one of :data:`BLAS_THREADS`: the learned
    router's products are small, and a BLAS thread pool on a busy machine made them 5-10 times slower
    (docs/routing.md). It takes effect because nothing has loaded numpy yet when ``serve`` starts (a test keeps it
    so); the worker processes inherit it."""
    for var in BLAS_THREADS:
        os.environ.setdefault(var, "1")


def serve_command(load: Any) -> click.Command:
    @click.command("serve")
    @click.option("--config", "config_path", default=default_config_path, type=click.Path(dir_okay=False),
              help="the YAML config (default: $SWITCHYARD_CONFIG, else ./switchyard.yaml)")
    @click.option("--host", default=None, help="overrides server.host")
    @click.option("--port", default=None, type=int, help="overrides server.port")
    @click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
                  help="worker processes sharing the port (SO_REUSEPORT)")
    @click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
    @click.option("--worker-child", is_flag=True, hidden=True)
    def serve(config_path: str, host: str | None, port: int | None, workers: int, log_level: str,
              worker_child: bool) -> None:
        """Run the gateway."""
        from ..telemetry.logs import configure

        single_threaded_blas()

        logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        _defer_sighup(remember=worker_child or workers == 1)
        cfg: Config = load(config_path)
        configure(log_level, cfg.server.log_format)  # the config's format, from here on
        host = host or cfg.server.host
        port = cfg.server.port if port is None else port
        try:
            check_secrets(cfg, config_path)
            if not worker_child:
                _check_port(host, port)
            if worker_child:
                os.environ.setdefault("SWITCHYARD_WORKER", str(os.getpid()))
                run_worker(cfg, config_path, host, port, migrate=False, quiet=True, reuse_port=True)
            elif workers > 1:
                _require_shared_ledger(cfg, config_path, workers)
                run_supervisor(cfg, config_path, host, port, workers, log_level)
            else:
                run_worker(cfg, config_path, host, port, migrate=True, quiet=False, reuse_port=False)
        except KeyboardInterrupt:  # Ctrl-C while starting (once serving, the server stops gracefully itself)
            click.echo("stopped", err=True)
            sys.exit(130)

    return serve
