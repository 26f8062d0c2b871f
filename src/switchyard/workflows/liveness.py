"""Which replica runs a dead replica's runs (PostgreSQL only): a lease per executor id, and its takeover.

DBOS recovers, at launch, the unfinished runs of the process's own executor id only. Each process has its own id
(``runner.executor_id``), so that a restart never takes over a run that another live process is executing. But a
replica that dies and does not come back (a crashed host, a scaled-down pod) would leave its runs pending for ever.
This module closes that gap:

* **The lease.** Before DBOS launches, the process takes a PostgreSQL session advisory lock on its executor id, on a
  connection of its own, and holds it while it lives. The session has ``idle_session_timeout`` set to
  ``workflows.lease_s``, and the process touches it every ``workflows.recovery_interval_s``. A process that dies
  loses its lock: at once when it is killed (the kernel closes its socket), after ``lease_s`` when its host
  vanishes (the server ends the idle session). Two live processes configured with one executor id cannot both hold
  it: the second waits ``2 x lease_s``, then refuses to start, naming the id.
* **The takeover.** At every touch, the process lists the executor ids that own pending runs (of this application
  version) and tries each one's lock. A lock it gets belongs to a dead process. After seeing it free on two
  touches at least ``recovery_interval_s`` apart (a live process whose session just reconnected takes its lock
  back in between), it hands that executor's pending runs back to DBOS's queue while holding the lock
  (``DBOS._recover_pending_workflows``: a conditional update, PENDING and still owned by that executor), then
  releases the lock. Any live process then dequeues each run, atomically, once; replay skips every completed step,
  and DBOS's ownership check refuses a step result from an execution that lost its run.
* **A restart of the dead one** takes its own lock first (waiting while a takeover holds it), so its launch and a
  takeover never recover the same run twice.

Why not one executor id shared by every replica, with recovery at launch only? Then each launch re-dispatches the
runs that the other, live, replicas are executing (their step in flight runs twice, and their execution is fenced
out), and a replica that dies is not recovered until some replica restarts. With an id per process, a run moves
only when its process is gone.

On SQLite (one host) there is nothing to take over: a process resumes its own runs when it starts again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from typing import Any

log = logging.getLogger("switchyard.workflows")

NAMESPACE = "switchyard.workflows.executor"


class ExecutorIdInUse(RuntimeError):
    """Another live process holds this executor id's lease."""


def lock_key(executor_id: str) -> int:
    """The advisory lock's key for an executor id (a signed 64-bit integer)."""
    digest = hashlib.sha256(f"{NAMESPACE}\n{executor_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Lease:
    """This process's lease on its executor id, and the takeover of dead executors' runs (see the module)."""

    def __init__(self, url: str, executor_id: str, app_version: str, *, interval: float, lease_s: float,
                 schema: str = "dbos") -> None:
        self.url = url
        self.executor_id = executor_id
        self.app_version = app_version
        self.interval = interval
        self.lease_s = lease_s
        self.schema = schema
        self.conn: Any = None
        self.suspects: dict[str, float] = {}  # executor id -> when its lock was first seen free
        self.taken_over: list[str] = []  # executor ids whose runs this process handed back to the queue
        self._io = threading.Lock()  # one statement at a time on the connection

    # --- the connection and this process's own lock ---

    def _connect(self) -> Any:
        import psycopg

        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10,
                               application_name=f"switchyard-workflows {self.executor_id}"[:63],
                               keepalives=1, keepalives_idle=max(1, int(self.lease_s / 3)),
                               keepalives_interval=max(1, int(self.lease_s / 6)), keepalives_count=3)
        conn.execute(f"SET idle_session_timeout = {int(self.lease_s * 1000)}")
        return conn

    def acquire(self, wait_s: float | None = None) -> None:
        """Take this process's lock (blocking: call it in a thread), before DBOS launches. Waits while a takeover
        holds it, or a dead predecessor's session lingers; :class:`ExecutorIdInUse` after ``wait_s`` (default
        ``2 x lease_s``)."""
        deadline = time.monotonic() + (2 * self.lease_s if wait_s is None else wait_s)
        with self._io:
            if self.conn is None or self.conn.closed:
                self.conn = self._connect()
            while not self.conn.execute("SELECT pg_try_advisory_lock(%s)",
                                        (lock_key(self.executor_id),)).fetchone()[0]:
                if time.monotonic() >= deadline:
                    raise ExecutorIdInUse(
                        f"the workflow executor id {self.executor_id!r} is held by another live process: give each "
                        "replica its own (workflows.executor_id or $SWITCHYARD_EXECUTOR_ID)")
                time.sleep(min(0.5, self.interval))

    def close(self) -> None:
        """Release the lock (with the session): the runs still pending here are then taken over elsewhere."""
        with self._io:
            if self.conn is not None and not self.conn.closed:
                self.conn.close()
            self.conn = None

    # --- every interval: touch the session, take over the dead ---

    def _dead(self, now: float) -> list[str]:
        """The executors with pending runs whose lock this process now holds, seen free long enough (the locks of
        the others, just taken, are released again)."""
        with self._io:
            if self.conn is None or self.conn.closed:  # the session was lost: so was the lock; take it back first
                self.conn = self._connect()
                if not self.conn.execute("SELECT pg_try_advisory_lock(%s)",
                                         (lock_key(self.executor_id),)).fetchone()[0]:
                    log.warning("workflows: lost the lease on executor id %r, and another process holds it now",
                                self.executor_id)
                    return []
            rows = self.conn.execute(
                f'SELECT DISTINCT executor_id FROM "{self.schema}".workflow_status WHERE status = %s '
                "AND application_version = %s AND executor_id IS NOT NULL AND executor_id <> %s",
                ("PENDING", self.app_version, self.executor_id)).fetchall()
            dead = []
            for (other,) in rows:
                got = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(other),)).fetchone()[0]
                if not got:
                    self.suspects.pop(other, None)
                    continue
                first = self.suspects.setdefault(other, now)
                if now - first >= self.interval:
                    dead.append(other)  # kept locked until its runs are handed back
                else:
                    self.conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(other),))
            for gone in set(self.suspects) - {r[0] for r in rows}:
                del self.suspects[gone]
            return dead

    def _release(self, executor_id: str) -> None:
        with self._io:
            self.suspects.pop(executor_id, None)
            if self.conn is not None and not self.conn.closed:
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(executor_id),))

    async def tick(self) -> bool:
        """One touch (a Worker's step): take over the runs of the executors found dead."""
        from dbos import DBOS

        try:
            dead = await asyncio.to_thread(self._dead, time.monotonic())
        except Exception as e:
            log.warning("workflows: the executor lease check failed (%s: %s)", type(e).__name__, e)
            with self._io:
                if self.conn is not None:
                    self.conn.close()
            return False
        for other in dead:
            try:
                handles = await asyncio.to_thread(DBOS._recover_pending_workflows, [other])
                log.warning("workflows: executor %r is gone; %d of its pending runs handed to the queue",
                            other, len(handles))
                self.taken_over.append(other)
            finally:
                await asyncio.to_thread(self._release, other)
        return True
