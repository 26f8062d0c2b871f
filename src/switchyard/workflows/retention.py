"""Retention: a run's step inputs and outputs are kept only while the run needs them (to resume after a crash),
unless the key's logging mode is ``full``.

Once a run has ended, :func:`scrub` clears, in DBOS's system database, the recorded output of each of its steps
and the run's input (its workflow arguments keep the definition and the caller, without ``input``). What stays is
what the API shows of a run: status, timings, cost, errors and the final output the caller asked for.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

log = logging.getLogger("switchyard.workflows")

ENDED = ("SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")


def _tables(sysdb: Any) -> tuple[Any, Any, Any]:
    return sysdb.engine, sysdb.tables.operation_outputs, sysdb.tables.workflow_status


def scrub(run_id: str) -> bool:
    """Clear an ended run's step outputs and input (True if it did; False if the run has not ended)."""
    from dbos import _dbos

    dbos: Any = _dbos._get_dbos_instance()
    sysdb = dbos._sys_db
    engine, ops, ws = _tables(sysdb)
    with engine.begin() as conn:
        row = conn.execute(sa.select(ws.c.status, ws.c.inputs).where(ws.c.workflow_uuid == run_id)).first()
        if row is None or row.status not in ENDED:
            return False
        conn.execute(sa.update(ops).where(ops.c.workflow_uuid == run_id, ops.c.function_name.like("step:%"))
                     .values(output=None))
        if row.inputs:
            try:
                inputs = dbos._serializer.deserialize(row.inputs)
                spec = dict(inputs["args"][0])
                if "input" in spec:
                    spec["input"] = None
                    value = dbos._serializer.serialize({"args": (spec,), "kwargs": inputs.get("kwargs", {})})
                    conn.execute(sa.update(ws).where(ws.c.workflow_uuid == run_id).values(inputs=value))
            except Exception:  # another serialization: leave the input, say so
                log.warning("workflows: could not clear the input of run %s", run_id)
    return True


def step_outputs(run_id: str) -> list[Any]:
    """What DBOS holds of the run's step outputs (for tests and ``workflow status --steps``)."""
    from dbos import _dbos

    sysdb: Any = _dbos._get_dbos_instance()._sys_db
    engine, ops, _ws = _tables(sysdb)
    with engine.connect() as conn:
        q = sa.select(ops.c.output).where(ops.c.workflow_uuid == run_id, ops.c.function_name.like("step:%"))
        return [r.output for r in conn.execute(q.order_by(ops.c.function_id))]
