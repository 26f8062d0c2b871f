"""Live reload: ``POST /admin/config/reload`` and ``SIGHUP`` load the config file again and swap in its providers,
deployments, routes, prices and routing settings, without a restart and without failing a call.

A reload reads and validates the file exactly as ``switchyard check`` does (:func:`~switchyard.config.load_config`:
the same messages), refuses a file that changes a key that does not reload (:data:`FROZEN`), builds the new
catalog, router and executor off to the side, starts the providers it adds, then swaps the gateway's
:class:`~switchyard.pipeline.Generation`: one reference, read once at the start of each call. Calls in flight keep
the generation they started with; a provider the new configuration drops (or changes) is closed when the last call
of every generation holding it has ended. Providers whose configuration is unchanged are reused (their connection
pools stay warm), and the health registry is shared, so surviving deployments keep their breaker state.

Under ``serve --workers N`` the supervisor forwards SIGHUP to every worker; a worker that reloads through the admin
API signals the supervisor (see :mod:`switchyard.cli.serve`), so every worker reloads from the same file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .catalog import Catalog
from .config import Config, ConfigError, load_config
from .config.routing import breaker_settings
from .pipeline import Gateway, Generation
from .providers import Provider, build_provider
from .routing import Executor, Router

if TYPE_CHECKING:
    from .governance.rbac import Actor

log = logging.getLogger("switchyard.reload")

#: Top-level keys a reload applies; a change to any other key is refused (it needs a restart).
RELOADABLE = ("providers", "deployments", "routes", "routing")
#: Keys read once at start-up: the listener, the store, keys and secrets, governance and ledger backends, telemetry.
FROZEN = tuple(k for k in Config.model_fields if k not in RELOADABLE)


@dataclass(slots=True)
class Summary:
    """What a reload changed (deployment names)."""

    generation: int
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"generation": self.generation, "added": self.added, "removed": self.removed, "changed": self.changed}


def frozen_problems(old: Config, new: Config) -> list[str]:
    """One line per key that changed but does not reload."""
    return [f"{k}: changed, but it does not reload; restart the gateway to apply it" for k in FROZEN
            if getattr(old, k) != getattr(new, k)]


def diff(old: Config, new: Config) -> tuple[list[str], list[str], list[str]]:
    """Deployments added, removed, and changed (their own settings or their provider's)."""
    before = {d.name: d for d in old.deployments}
    after = {d.name: d for d in new.deployments}
    changed = [n for n, d in after.items() if n in before and (
        d != before[n] or old.providers.get(d.provider) != new.providers.get(d.provider))]
    return ([n for n in after if n not in before], [n for n in before if n not in after], changed)


class Reloader:
    """Reloads one gateway from its config file; see the module's docstring."""

    def __init__(self, gateway: Gateway, path: str | None, *,
                 provider_factory: Callable[[str, Any], Provider] = build_provider) -> None:
        self.gateway = gateway
        self.path = path
        self.factory = provider_factory
        self.notify: Callable[[], None] | None = None  # a worker of `serve --workers N`: tell the other workers
        self._lock = asyncio.Lock()
        self._retired: list[Generation] = []  # generations whose providers are not all closed yet
        self._closing: set[asyncio.Task[Any]] = set()  # reloads on a signal, closing providers
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending = False  # a SIGHUP before the gateway started
        gateway.gen.on_drained = self._drained

    # --- triggers -------------------------------------------------------------------------------------------

    def listen(self, pending: bool = False) -> None:
        """Reload on SIGHUP (call from the main thread, before the server runs: ``switchyard serve`` does);
        ``pending``: a SIGHUP came during start-up, before this (it reloads once the gateway has started)."""
        signal.signal(signal.SIGHUP, lambda _s, _f: self.signalled())
        if pending:
            self.signalled()

    def started(self) -> None:
        """The gateway started (on its loop): signals reload on this loop, and one that came before is done now."""
        self._loop = asyncio.get_running_loop()
        if self._pending:
            self._pending = False
            self._spawn()

    def signalled(self) -> None:
        loop = self._loop
        if loop is None:
            self._pending = True  # not started yet: reload once started
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._spawn)

    def _spawn(self) -> None:
        task = asyncio.get_running_loop().create_task(self.from_signal())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def from_signal(self) -> Summary | None:
        """A reload asked by SIGHUP: logged; audited (as ``signal:SIGHUP``) when it changed something."""
        from .governance.rbac import Actor

        try:
            return await self.reload(Actor(id="signal:SIGHUP", super=True), audit_unchanged=False)
        except ConfigError:
            pass  # logged (and audited) by reload: the configuration in use keeps serving
        except Exception:
            log.exception("reload on SIGHUP failed; the configuration in use keeps serving")
        return None

    # --- the reload -----------------------------------------------------------------------------------------

    async def reload(self, actor: Actor, request_id: str | None = None, *, audit_unchanged: bool = True,
                     ) -> Summary:
        """Load, check and swap in the config file. Raises :class:`ConfigError` (the old one keeps serving)."""
        if self.path is None:
            raise ConfigError("<config>", ["the gateway was not started from a config file: nothing to reload"])
        async with self._lock:  # one reload at a time: each builds on the one before
            try:
                summary = await self._reload(self.path)
            except ConfigError as e:
                log.warning("config reload by %s refused: %s", actor.id, "; ".join(e.problems))
                gov = self.gateway.governance
                if gov is not None:
                    why = "the configuration fails `switchyard check`: " + "; ".join(e.problems)
                    await gov.record_denial(actor, "config.reload", self.path, why[:1000], 400, request_id)
                raise
        changed = bool(summary.added or summary.removed or summary.changed)
        log.info("config reloaded by %s: generation %d, added %s, removed %s, changed %s", actor.id,
                 summary.generation, summary.added or "-", summary.removed or "-", summary.changed or "-")
        if changed or audit_unchanged:
            await self._audit(actor, request_id, summary.as_dict())
        return summary

    async def _reload(self, path: str) -> Summary:
        gw = self.gateway
        old = gw.gen
        cfg = await asyncio.to_thread(load_config, path)  # switchyard check's own function: the same messages
        problems = frozen_problems(old.config, cfg)
        if problems:
            raise ConfigError(path, problems)
        if cfg == old.config:  # nothing to swap (the echo of a reload under --workers, or a file saved unchanged)
            return Summary(old.number)
        reused: dict[str, Provider] = {}
        fresh: dict[str, Provider] = {}

        def provider(name: str, pc: Any) -> Provider:
            prev = old.catalog.providers.get(name)
            if prev is not None and old.config.providers.get(name) == pc:
                reused[name] = prev
                return prev
            fresh[name] = p = self.factory(name, pc)
            return p

        try:
            catalog = Catalog.from_config(cfg, provider)
        except ValueError as e:  # a provider that cannot be built: the config's fault, as `switchyard serve` says
            raise ConfigError(path, [str(e)]) from None
        try:
            for p in fresh.values():
                await p.start()
        except Exception as e:
            for p in fresh.values():
                await p.aclose()
            raise ConfigError(path, [f"a provider failed to start: {type(e).__name__}: {e}"]) from None
        # from here on, no await: the swap is atomic for the event loop
        added, removed, changed = diff(old.config, cfg)
        health = old.router.health
        health.sync(catalog.deployments, breaker_settings(cfg.routes, cfg.routing), cfg.routing.breaker)
        router = Router(catalog, cfg, health=health, clock=old.router.clock)
        ex = old.executor
        executor = Executor(router, clock=ex.clock, sleep=ex.sleep, rng=ex.rng)
        executor.tracer = ex.tracer
        new = Generation(old.number + 1, cfg, catalog, router, executor)
        new.on_drained = self._drained
        gw.gen, gw.config = new, cfg
        if gw.governance is not None:
            gw.governance.known_models = frozenset(d.name for d in cfg.deployments) | frozenset(cfg.routes)
        self._retired.append(old)
        old.retire()
        return Summary(new.number, added, removed, changed)

    # --- closing what is no longer used -----------------------------------------------------------------------

    def _drained(self, g: Generation) -> None:
        """A retired generation's last call ended: close its providers that no live generation holds."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # released off the loop (a stream dropped at exit): aclose closes it
            return
        if g in self._retired:
            self._retired.remove(g)
        live = [self.gateway.gen, *(r for r in self._retired)]
        held = {id(p) for gen in live for p in gen.catalog.providers.values()}
        gone = [p for p in g.catalog.providers.values() if id(p) not in held]
        if gone:
            task = loop.create_task(self._close(gone))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close(providers: list[Provider]) -> None:
        for p in providers:
            try:
                await p.aclose()
            except Exception:
                log.exception("closing provider %s after a reload failed", p.name)

    async def aclose(self) -> None:
        """At shutdown: close what retired generations still hold (the current one is closed by the gateway)."""
        current = {id(p) for p in self.gateway.gen.catalog.providers.values()}
        seen: set[int] = set()
        for g in self._retired:
            for p in g.catalog.providers.values():
                if id(p) not in current and id(p) not in seen:
                    seen.add(id(p))
                    await self._close([p])
        self._retired.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    # --- audit ------------------------------------------------------------------------------------------------

    async def _audit(self, actor: Actor, request_id: str | None, details: dict[str, Any]) -> None:
        """Append the reload to the audit log (kind ``admin``, action ``config.reload``). The swap is done: a store
        outage is logged, not raised."""
        gov = self.gateway.governance
        if gov is None or gov.audit is None:
            return
        from .governance.identity import Ops
        from .governance.rbac import Owner

        ops = Ops(actor=actor, audit=gov.audit, request_id=request_id)
        target, info = self.path, {**details, "pid": os.getpid()}

        def work() -> None:
            with gov.db.write() as conn:
                ops.record(conn, "config.reload", target, Owner(actor.org_id), info)

        try:
            await gov.db.run(work)
        except Exception:
            log.exception("the audit of a config reload failed (the reload is done)")
