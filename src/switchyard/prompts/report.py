"""An experiment's report: per variant, requests, errors, latency p50/p95, cost per request and in total, and each
declared metric's mean with its 95% confidence interval; for the first two variants, the difference on the
experiment's metric with its 95% CI and p-value (Welch's t-test for a numeric metric; for a boolean one the
two-proportion z-test, as SciPy's chi-square test of the 2x2 table without continuity correction, whose statistic
is z squared); and the bandit's current allocation.

The data are the experiment's rows of ``request_log`` joined with ``feedback_metrics``. Feedback stored as pending
(it arrived before its call's record) is matched first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from ..governance.identity import Ops
from ..store.prompt_tables import feedback_metrics, request_log
from . import experiments
from .assign import bandit_allocation
from .models import Report


def match_pending(conn: sa.Connection) -> int:
    """Give pending feedback its call's id once the call's record is stored (by our id or the caller's)."""
    fm, rl = feedback_metrics.c, request_log.c
    n = 0
    for row in conn.execute(sa.select(fm.id, fm.request_id, fm.principal_id).where(fm.pending.is_(True))
                            .limit(10_000)).all():
        rid = conn.execute(sa.select(rl.request_id).where(
            sa.or_(rl.request_id == row.request_id, rl.client_request_id == row.request_id),
            rl.principal_id == row.principal_id).order_by(rl.id.desc()).limit(1)).scalar()
        if rid is not None:
            clash = conn.execute(sa.select(fm.id).where(fm.request_id == rid, fm.pending.is_(False),
                                                        fm.principal_id == row.principal_id,
                                                        fm.metric == sa.select(fm.metric).where(fm.id == row.id)
                                                        .scalar_subquery())).first()
            if clash is not None:  # a later rating of the matched call wins
                conn.execute(sa.delete(feedback_metrics).where(fm.id == row.id))
            else:
                conn.execute(sa.update(feedback_metrics).where(fm.id == row.id).values(request_id=rid, pending=False))
            n += 1
    return n


def _ci(values: list[float]) -> tuple[float | None, float | None, float | None]:
    from scipy import stats  # type: ignore[import-untyped]

    if not values:
        return None, None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None, None
    sem = stats.sem(values)
    if not sem or math.isnan(sem):
        return mean, mean, mean
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=sem)
    return mean, float(lo), float(hi)


def compare(a: list[float], b: list[float], kind: str) -> dict[str, Any] | None:
    """B minus A: the difference of the means, its 95% CI and the p-value; None with fewer than 2 values each."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return None
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    if kind == "boolean":
        sa_, sb_ = sum(a), sum(b)
        table = [[sa_, len(a) - sa_], [sb_, len(b) - sb_]]
        if min(sum(col) for col in zip(*table, strict=True)) == 0:  # all successes or all failures: no test
            p, stat = 1.0, 0.0
        else:
            chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
            stat = math.copysign(math.sqrt(chi2), mb - ma)
        se = math.sqrt(ma * (1 - ma) / len(a) + mb * (1 - mb) / len(b))
        z = float(stats.norm.ppf(0.975))
        return {"test": "two-proportion z-test", "difference": mb - ma, "ci95": [mb - ma - z * se, mb - ma + z * se],
                "statistic": stat, "p_value": float(p)}
    res = stats.ttest_ind(b, a, equal_var=False)
    lo, hi = res.confidence_interval(0.95)
    p = float(res.pvalue)
    return {"test": "Welch's t-test", "difference": mb - ma,
            "ci95": [float(lo), float(hi)] if not math.isnan(lo) else [mb - ma, mb - ma],
            "statistic": float(res.statistic) if not math.isnan(res.statistic) else 0.0,
            "p_value": p if not math.isnan(p) else 1.0}


def report(conn: sa.Connection, ops: Ops, exp_id: str, metrics: Mapping[str, Any]) -> Report:
    import numpy as np

    exp = experiments.get(conn, ops, exp_id)
    match_pending(conn)
    rl, fm = request_log.c, feedback_metrics.c
    calls = conn.execute(sa.select(rl.request_id, rl.variant, rl.status, rl.latency_ms, rl.cost, rl.ts)
                         .where(rl.experiment_id == exp_id).order_by(rl.id)).all()
    values: dict[tuple[str, str], list[float]] = {}
    series: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for variant, metric, value, ts in conn.execute(sa.select(rl.variant, fm.metric, fm.value, fm.ts).select_from(
            request_log.join(feedback_metrics, fm.request_id == rl.request_id))
            .where(rl.experiment_id == exp_id, fm.pending.is_(False)).order_by(fm.ts)):
        values.setdefault((str(variant), metric), []).append(float(value))
        series.setdefault((str(variant), metric), []).append((ts.isoformat(), float(value)))
    out: list[dict[str, Any]] = []
    for v in exp.spec["variants"]:
        name = v["name"]
        mine = [c for c in calls if c.variant == name]
        lat = np.array([c.latency_ms for c in mine], dtype=float)
        cost = float(sum(float(c.cost) for c in mine))
        row: dict[str, Any] = {
            "name": name, "version": v.get("version"), "model": v.get("model"), "requests": len(mine),
            "errors": sum(c.status != "ok" for c in mine),
            "latency_ms": {"p50": float(np.percentile(lat, 50)) if len(lat) else None,
                           "p95": float(np.percentile(lat, 95)) if len(lat) else None},
            "cost": {"total": cost, "per_request": cost / len(mine) if mine else None}, "metrics": {}}
        for m in sorted({k[1] for k in values} | ({exp.spec["metric"]} if exp.spec.get("metric") else set())):
            vals = values.get((name, m), [])
            mean, lo, hi = _ci(vals)
            row["metrics"][m] = {"n": len(vals), "mean": mean, "ci95": [lo, hi], "series": series.get((name, m), [])}
        out.append(row)
    comparison = None
    metric = exp.spec.get("metric")
    if metric and len(out) >= 2:
        a, b = out[0]["name"], out[1]["name"]
        kind = str((metrics.get(metric) or {}).get("type", "numeric"))
        c = compare(values.get((a, metric), []), values.get((b, metric), []), kind)
        if c is not None:
            comparison = {"metric": metric, "a": a, "b": b, **c,
                          "better": (b if c["difference"] > 0 else a) if c["p_value"] < 0.05 else None}
    names = [v["name"] for v in exp.spec["variants"]]
    alloc = None
    if metric:
        alloc = bandit_allocation(exp.spec, {n: values.get((n, metric), []) for n in names}, metrics.get(metric))
    if alloc is None:
        weights = [float(v.get("weight", 1.0)) for v in exp.spec["variants"]]
        total = sum(weights)
        alloc = {n: w / total for n, w in zip(names, weights, strict=True)}
    return Report(experiment_id=exp_id, status=exp.status, variants=out, comparison=comparison, allocation=alloc)


def check_stop_rules(conn: sa.Connection, ops: Ops, metrics: Mapping[str, Any]) -> list[str]:
    """Stop the running experiments whose rule is met (a fixed horizon, or a significant comparison)."""
    stopped: list[str] = []
    for exp in experiments.list_experiments(conn, ops):
        rule = exp.spec.get("stop") or {}
        if exp.status != experiments.RUNNING or not (rule.get("max_requests") or rule.get("p_value")):
            continue
        reason = None
        if rule.get("max_requests") and experiments.requests_served(conn, exp.id) >= int(rule["max_requests"]):
            reason = f"horizon: {rule['max_requests']} requests"
        elif rule.get("p_value"):
            c = report(conn, ops, exp.id, metrics).comparison
            if c is not None and c["p_value"] < float(rule["p_value"]):
                reason = f"significant: p = {c['p_value']:.4g} < {rule['p_value']}"
        if reason is not None:
            experiments.stop(conn, ops, exp.id, reason)
            stopped.append(exp.id)
    return stopped
