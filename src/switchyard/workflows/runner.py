"""The runner: each run is one DBOS workflow, each step call one DBOS step (checkpointed in DBOS's system database).

A crash (even SIGKILL) loses only the steps in flight: on the next launch DBOS recovers the run (on PostgreSQL, a
live replica takes it over sooner: ``liveness``), replays it, and every step already completed returns its
recorded result instead of running again. Runs are started with a
workflow id derived from the caller's ``Idempotency-Key``, so a retried POST never starts a second run.

The run's progress (each step's status, timings, cost; its output only when the key's logging mode is ``full``)
is published as the DBOS event ``state`` after every step; the API and the events stream read it.
This module imports ``dbos``: it is imported only when a ``workflows:`` section is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from typing import TYPE_CHECKING, Any, NoReturn

from dbos import DBOS, DBOSConfig, SetWorkflowAttributes, SetWorkflowID

from .definition import Step, StepBody, Workflow
from .expressions import search
from .retention import ENDED, scrub
from .steps import Env, execute

if TYPE_CHECKING:
    from ..config.workflows import WorkflowsConfig
    from ..governance.auth import Principal
    from ..pipeline import Gateway

log = logging.getLogger("switchyard.workflows")

WORKFLOW_NAME = "switchyard.workflow"
APP_VERSION = "switchyard-workflows-1"  # pinned, so a restarted process recovers the runs of the one before
_runtime: Runtime | None = None


class Runtime:
    """DBOS in this process, and what the runs need of it."""

    def __init__(self, gateway: Gateway, config: WorkflowsConfig, store: str) -> None:
        self.gateway = gateway
        self.config = config
        self.database = config.system_database(store)
        self.launched = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.executor_id = executor_id(config.executor_id, self.database.startswith("postgresql"))
        self.lease: Any = None  # liveness.Lease on PostgreSQL
        self.takeover: Any = None  # the Worker that runs its ticks

    async def start(self) -> None:
        global _runtime
        _runtime = self
        url = self.database
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            d = os.path.dirname(url[len("sqlite:///"):])
            if d:
                os.makedirs(d, exist_ok=True)
        if url.startswith("postgresql"):  # this process's lease on its executor id, before DBOS recovers its runs
            from .liveness import Lease

            self.lease = Lease(url, self.executor_id, APP_VERSION, interval=self.config.recovery_interval_s,
                               lease_s=self.config.lease_s)
            await asyncio.to_thread(self.lease.acquire)
        cfg: DBOSConfig = {"name": "switchyard", "system_database_url": url, "application_version": APP_VERSION,
                           "executor_id": self.executor_id, "log_level": "WARNING",
                           "notification_listener_polling_interval_sec": 0.05,
                           "sys_db_pool_size": self.config.pool_size}
        if url.startswith("sqlite:///") and self.config.sqlite_synchronous == "normal":
            _sqlite_wal(url[len("sqlite:///"):])
        DBOS(config=cfg)
        DBOS.launch()  # from the serving loop's thread: recovered runs execute on this loop
        self.launched = True
        if url.startswith("sqlite:///") and self.config.sqlite_synchronous == "normal":
            _sqlite_normal_sync()
        with contextlib.suppress(Exception):
            await self.sweep()
        if self.lease is not None:
            from ..worker import Worker

            self.takeover = Worker("workflow-takeover", self.lease.tick, interval=self.config.recovery_interval_s,
                                   backoff_initial=min(1.0, self.config.recovery_interval_s),
                                   backoff_max=self.config.recovery_interval_s, jitter=0.2)
            self.takeover.start()

    def forget_when_done(self, run_id: str, handle: Any) -> None:
        """Once the run has ended, clear its step outputs and input (``retention.scrub``)."""

        async def wait() -> None:
            with contextlib.suppress(BaseException):
                await handle.get_result()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(scrub, run_id)

        task = asyncio.get_running_loop().create_task(wait())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def sweep(self) -> None:
        """At launch: scrub the ended runs of keys without retention that a crash left unscrubbed."""
        ended = await DBOS.list_workflows_async(name=WORKFLOW_NAME, status=list(ENDED), load_output=False,
                                                load_input=False, limit=1000, sort_desc=True)
        for s in ended:
            if not (getattr(s, "attributes", None) or {}).get("retain"):
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(scrub, s.workflow_id)

    async def aclose(self) -> None:
        global _runtime
        for t in list(self.tasks):
            t.cancel()
        if self.takeover is not None:
            await self.takeover.stop()
            self.takeover = None
        if self.launched:
            # DBOS made its own pool the loop's default executor: give the loop a fresh one before DBOS shuts its
            # pool down, so the services closed after this one can still use asyncio.to_thread
            from concurrent.futures import ThreadPoolExecutor

            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(thread_name_prefix="asyncio"))
            await asyncio.to_thread(DBOS.destroy, workflow_completion_timeout_sec=0)
            self.launched = False
        if self.lease is not None:  # last: the runs left pending here go to the other replicas from now on
            await asyncio.to_thread(self.lease.close)
            self.lease = None
        if _runtime is self:
            _runtime = None


def executor_id(configured: str | None, postgres: bool = False) -> str:
    """This process's DBOS executor id: ``workflows.executor_id``, else ``$SWITCHYARD_EXECUTOR_ID``, else the host's
    name on PostgreSQL (replicas on several hosts differ by default) and ``local`` on SQLite (one host); a worker of
    ``serve --workers N`` adds its slot (``-w0``, ``-w1``, ...). DBOS recovers, at launch, the unfinished runs of
    its own executor id only: a restarted worker (or replica) resumes its own runs and never takes over a run that
    another live process is executing. The runs of one that does not come back are taken over by a live one
    (``liveness``)."""
    import socket

    base = configured or os.environ.get("SWITCHYARD_EXECUTOR_ID") or (socket.gethostname() if postgres else "local")
    slot = os.environ.get("SWITCHYARD_WORKER_INDEX")
    return f"{base}-w{slot}" if slot else base


def _sqlite_wal(path: str) -> None:
    """WAL journal (a property of the file, kept across opens): a commit writes the log once."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")


def _sqlite_normal_sync() -> None:
    """``synchronous=NORMAL`` on DBOS's connections: a commit survives a crash of the process (SIGKILL included),
    not a power loss (``workflows.sqlite_synchronous: full`` keeps SQLite's default)."""
    from dbos import _dbos
    from sqlalchemy import event

    engine: Any = _dbos._get_dbos_instance()._sys_db.engine

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    event.listen(engine.pool, "connect", on_connect)
    engine.pool.dispose()  # connections opened so far reopen with it


def run_id_for(principal: Principal, idempotency_key: str | None) -> str:
    import hashlib
    import secrets

    if idempotency_key is None:
        return "run_" + secrets.token_hex(12)
    return "run_" + hashlib.sha256(f"{principal.id}\n{idempotency_key}".encode()).hexdigest()[:24]


async def start_run(wf: Workflow, source: str, value: Any, principal: Principal, run_id: str,
                    config: WorkflowsConfig) -> Any:
    """Start the run; its handle (``await handle.get_result()``), or None when a run with this id exists already
    (and nothing was started)."""
    if await DBOS.get_workflow_status_async(run_id) is not None:
        return None
    deadline = time.time() + (wf.deadline_s or config.default_deadline_s)
    snapshot = dataclasses.replace(principal, metadata=dict(principal.metadata))  # picklable
    retain = principal.logging == "full"
    spec = {"run_id": run_id, "workflow": wf.model_dump(by_alias=True, exclude_none=True), "source": source,
            "input": value, "principal": snapshot, "deadline": deadline, "retain": retain}
    attrs = {"workflow": wf.name, "version": wf.version, "source": source, "key": principal.id,
             "org": principal.org_id or "", "team": principal.team_id or "", "retain": retain}
    with SetWorkflowID(run_id), SetWorkflowAttributes(attrs):
        handle = await DBOS.start_workflow_async(run_workflow, spec)
    if not spec["retain"] and _runtime is not None:
        _runtime.forget_when_done(run_id, handle)
    return handle


@DBOS.workflow(name=WORKFLOW_NAME)
async def run_workflow(spec: dict[str, Any]) -> dict[str, Any]:
    rt = _runtime
    if rt is None:  # pragma: no cover - DBOS launches only from Runtime.start
        raise RuntimeError("the workflow runtime is not started")
    return await Execution(rt, spec).run()


class Execution:
    """One run, replayed deterministically from its recorded steps (nothing here reads the clock)."""

    def __init__(self, rt: Runtime, spec: dict[str, Any]) -> None:
        self.rt = rt
        self.wf = Workflow.model_validate(spec["workflow"])
        self.input = spec["input"]
        self.retain = bool(spec.get("retain"))
        self.env = Env(rt.gateway, rt.config, spec["principal"], spec["run_id"], float(spec["deadline"]))
        self.outputs: dict[str, Any] = {}
        self.state: dict[str, Any] = {"run_id": spec["run_id"], "workflow": self.wf.name,
                                      "version": self.wf.version, "status": "running", "cost": 0.0,
                                      "steps": {s.id: {"status": "pending"} for s in self.wf.steps
                                                if s.id not in self.wf.fallbacks()}}
        self.executed = 0

    def data(self, **extra: Any) -> dict[str, Any]:
        return {"input": self.input, "steps": self.outputs, **extra}

    async def publish(self) -> None:
        await DBOS.set_event_async("state", self.state)

    def remaining(self, step: StepBody) -> float | None:
        left = None if self.wf.budget_usd is None else max(0.0, self.wf.budget_usd - self.state["cost"])
        if step.budget_usd is None:
            return left
        return step.budget_usd if left is None else min(left, step.budget_usd)

    async def run(self) -> dict[str, Any]:
        skipped: set[str] = set()
        fallbacks = self.wf.fallbacks()
        by_id = self.wf.by_id()
        order = self.wf.order()
        last = max((i for i, s in enumerate(order) if s.id not in fallbacks), default=-1)
        for i, step in enumerate(order):
            if step.id in fallbacks:
                continue
            rec = self.state["steps"][step.id]
            if (step.needs and all(n in skipped for n in step.needs)) or self._gated_off(step, skipped):
                skipped.add(step.id)
                rec["status"] = "skipped"
                self.outputs[step.id] = None
                continue
            if self.wf.budget_usd is not None and self.state["cost"] >= self.wf.budget_usd:
                await self.fail(step.id, "budget_exceeded", f"the workflow's budget "
                                       f"(${self.wf.budget_usd:g}) is spent before step {step.id!r}")
            rec["status"] = "running"
            result = await self.run_step(step)
            self.account(rec, result)
            if not result["ok"] and step.on_error not in ("fail", "continue"):
                fb = by_id[step.on_error]
                rec["fallback"] = fb.id
                fb_result = await self.run_step(fb, name=f"{step.id}>{fb.id}")
                self.account(rec, fb_result, fallback=True)
                result = fb_result
            if result["ok"]:
                self.outputs[step.id] = result["output"]
                rec["status"] = "completed"
                if step.type == "condition":
                    rec["branch"] = "then" if result["output"] else "else"
            elif step.on_error == "continue":
                self.outputs[step.id] = None
                rec["status"] = "failed"
            else:
                rec["status"] = "failed"
                await self.fail(step.id, result["code"] or "step_failed", result["error"] or "failed")
            if self.retain:
                rec["output"] = self.outputs[step.id]
            if i != last:  # the last step's progress goes out with the run's end, in one write
                await self.publish()
        output = self.final_output()
        self.state["status"] = "completed"
        self.state["output"] = output
        await self.publish()
        return {"status": "completed", "output": output, "cost": self.state["cost"]}

    def _gated_off(self, step: Step, skipped: set[str]) -> bool:
        """A step in the branch its condition did not take."""
        for n in step.needs:
            cond = self.wf.by_id().get(n)
            if cond is None or cond.type != "condition" or n in skipped:
                continue
            taken = cond.then if self.outputs.get(n) else cond.else_
            other = cond.else_ if self.outputs.get(n) else cond.then
            if step.id in (other or []) and step.id not in (taken or []):
                return True
        return False

    def account(self, rec: dict[str, Any], result: dict[str, Any], fallback: bool = False) -> None:
        self.state["cost"] += result["cost"]
        prefix = "fallback_" if fallback else ""
        rec[prefix + "cost"] = result["cost"]
        rec[prefix + "attempts"] = result["attempts"]
        rec[prefix + "calls"] = result["calls"]
        if result["started"]:
            if not rec.get("started"):
                rec["started"] = result["started"]
            rec["ended"] = result["ended"]
            rec["duration_ms"] = round((rec["ended"] - rec["started"]) * 1000, 3)
        if result.get("deployments"):
            rec[prefix + "deployments"] = result["deployments"]
        if result.get("items") is not None:
            rec["items"] = result["items"]
        if not result["ok"]:
            rec[prefix + "error"] = result["error"]
            rec[prefix + "code"] = result["code"]

    async def fail(self, step_id: str, code: str, message: str) -> NoReturn:
        """Publish the failure, then raise it: DBOS records the run as ERROR (what a listing shows)."""
        self.state["status"] = "failed"
        self.state["error"] = {"step": step_id, "code": code, "message": message}
        await self.publish()
        raise RunFailed(step_id, code, message)

    def final_output(self) -> Any:
        out = self.wf.output
        data = self.data()
        if out is None:
            last = self.wf.order()[-1]
            return self.outputs.get(last.id)
        if isinstance(out, str):
            return search(out, data)
        return {k: search(expr, data) for k, expr in out.items()}

    def _count(self, n: int = 1) -> None:
        self.executed += n
        if self.executed > self.rt.config.max_steps:
            raise _TooMany()

    async def run_step(self, step: Step, name: str | None = None) -> dict[str, Any]:
        name = name or step.id
        if step.type == "condition":
            assert step.when is not None
            value = bool(search(step.when, self.data()))
            return {"ok": True, "output": value, "error": None, "code": None, "attempts": 1, "cost": 0.0,
                    "calls": 0, "started": None, "ended": None}  # evaluated in the workflow: no step, no clock
        if step.type == "map":
            return await self.run_map(step, name)
        try:
            self._count()
        except _TooMany:
            return _refused(f"more than {self.rt.config.max_steps} steps in one run", "too_many_steps")
        return await DBOS.run_step_async({"name": f"step:{name}"}, execute, self.env, name, step, self.data(),
                                         self.remaining(step))

    async def run_map(self, step: Step, name: str) -> dict[str, Any]:
        assert step.over is not None and step.step is not None
        items = search(step.over, self.data())
        if not isinstance(items, list):
            return _refused(f"over: {step.over!r} is not a list (it is {type(items).__name__})", "not_a_list")
        try:
            self._count(len(items))
        except _TooMany:
            return _refused(f"more than {self.rt.config.max_steps} steps in one run", "too_many_steps")
        body = step.step
        # the step ids are drawn now, in the items' order, so a replay finds each item's recorded result
        slots = [DBOS.reserve_step() for _ in items]
        gate = asyncio.Semaphore(step.concurrency)
        share = self.remaining(step)

        async def one(i: int, item: Any) -> dict[str, Any]:
            async with gate:
                r: dict[str, Any] = await slots[i].run_async({"name": f"step:{name}[{i}]"}, execute, self.env,
                                                             f"{name}[{i}]", body, self.data(item=item, index=i),
                                                             share)
                return r

        results = await asyncio.gather(*(one(i, it) for i, it in enumerate(items)))
        cost = sum(r["cost"] for r in results)
        failed = [i for i, r in enumerate(results) if not r["ok"]]
        out: dict[str, Any] = {"ok": True, "error": None, "code": None, "cost": cost,
                               "attempts": sum(r["attempts"] for r in results),
                               "calls": sum(r["calls"] for r in results),
                               "started": min((r["started"] for r in results), default=None),
                               "ended": max((r["ended"] for r in results), default=None),
                               "items": {"total": len(items), "failed": failed}}
        if failed and step.partial == "fail":
            first = results[failed[0]]
            out.update(ok=False, code=first["code"], error=f"item {failed[0]}: {first['error']} "
                       f"({len(failed)} of {len(items)} items failed)")
            out["output"] = None
        elif step.partial == "skip":
            out["output"] = [r["output"] for r in results if r["ok"]]
        else:
            out["output"] = [r["output"] if r["ok"] else None for r in results]
        return out


class RunFailed(Exception):
    """A run that ended in failure (its state says which step, with what code)."""

    def __init__(self, step: str, code: str, message: str) -> None:
        super().__init__(f"step {step!r} failed ({code})")  # DBOS logs it: no values from the run here
        self.step, self.code, self.message = step, code, message

    def __reduce__(self) -> tuple[Any, ...]:  # DBOS pickles the error it records
        return (RunFailed, (self.step, self.code, self.message))


class _TooMany(Exception):
    pass


def _refused(message: str, code: str) -> dict[str, Any]:
    return {"ok": False, "output": None, "error": message, "code": code, "attempts": 0, "cost": 0.0, "calls": 0,
            "started": None, "ended": None}


# --- reading runs ---------------------------------------------------------------------------------------------


async def read_run(run_id: str) -> dict[str, Any] | None:
    """The run's status as the API shows it, or None if there is none."""
    status = await DBOS.get_workflow_status_async(run_id)
    if status is None:
        return None
    state = await DBOS.get_event_async(run_id, "state", timeout_seconds=0) or {}
    out = view(status, state)
    attrs = getattr(status, "attributes", None) or {}
    ended = str(status.status) in ENDED and not attrs.get("retain") and run_id not in _scrubbed
    if ended and await asyncio.to_thread(scrub, run_id):  # a run recovered after a crash ends without a waiter
        _scrubbed[run_id] = None
        while len(_scrubbed) > 10_000:
            del _scrubbed[next(iter(_scrubbed))]
    return out


_scrubbed: dict[str, None] = {}  # runs this process has scrubbed (insertion-ordered, bounded)


def view(status: Any, state: dict[str, Any]) -> dict[str, Any]:
    attrs = getattr(status, "attributes", None) or {}
    dbos_status = str(status.status)
    run_status = state.get("status", "queued" if dbos_status == "ENQUEUED" else "running")
    if dbos_status == "CANCELLED":
        run_status = "cancelled"
    elif dbos_status in ("ERROR", "MAX_RECOVERY_ATTEMPTS_EXCEEDED") and run_status == "running":
        run_status = "failed"
    out = {"id": status.workflow_id, "object": "workflow.run", "workflow": attrs.get("workflow"),
           "version": attrs.get("version"), "source": attrs.get("source"), "status": run_status,
           "cost": state.get("cost", 0.0),
           "steps": state.get("steps", {}), "output": state.get("output"), "error": state.get("error"),
           "created_at": (status.created_at or 0) / 1000, "updated_at": (status.updated_at or 0) / 1000,
           "key": attrs.get("key"), "team": attrs.get("team") or None, "org": attrs.get("org") or None}
    return out


SQLITE_LIST_WINDOW = 5000  # SQLite cannot filter DBOS attributes: the newest runs are filtered here


async def list_runs(filters: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """The newest runs whose attributes match ``filters`` (PostgreSQL filters in SQL; SQLite, the newest
    ``SQLITE_LIST_WINDOW`` runs in memory)."""
    sqlite = _runtime is not None and _runtime.database.startswith("sqlite")
    found = await DBOS.list_workflows_async(name=WORKFLOW_NAME, attributes=None if sqlite else (filters or None),
                                            limit=SQLITE_LIST_WINDOW if sqlite else limit, sort_desc=True,
                                            load_input=False, load_output=False)
    out = []
    for s in found:
        attrs = getattr(s, "attributes", None) or {}
        if all(attrs.get(k) == v for k, v in filters.items()):
            out.append(view(s, {}) | {"status": _coarse(str(s.status))})
            if len(out) >= limit:
                break
    return out


def _coarse(s: str) -> str:
    return {"PENDING": "running", "ENQUEUED": "queued", "SUCCESS": "completed", "CANCELLED": "cancelled"}.get(
        s, "failed")


async def cancel_run(run_id: str) -> None:
    with contextlib.suppress(Exception):
        await DBOS.cancel_workflow_async(run_id)
