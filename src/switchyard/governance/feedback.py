"""Feedback on calls: ``POST /v1/feedback`` stores the outcome a caller reports for one of its own requests, and
``switchyard router train --from-store`` reads it back.

* **Whose request.** The request is looked up in the request log (``request_log``) by our request id, or by the
  caller's own ``x-request-id``, *and* the caller's principal. A request of another key, and one that does not
  exist, are the same 404: the answer never reveals that someone else's request exists. The request log is
  written off the hot path; when the request is not there yet, the gateway ships its spool once and looks again.
* **What is kept** depends on the key's logging mode:

  - ``full``: the prompt's text, when the call's payload (in the audit log) kept it, and the comment;
  - ``metadata``: the comment (the payload of such a call holds no text);
  - ``none`` (zero retention): only the outcome, never the prompt's text nor the comment.

  In every mode, the prompt's **embedding** is kept if the call computed one (the ``auto`` router or the semantic
  cache set ``CallContext.embedding``) and this replica still holds it in memory (:class:`RecentEmbeddings`: the
  last few thousand, for a while). Nothing is computed for feedback on the request path, and an embedding is
  never written to disk unless feedback asks for it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..errors import InvalidRequest
from ..store.audit_tables import audit_log
from ..store.feedback_tables import feedback
from ..store.tables import request_log

MAX_COMMENT = 4000
GOOD_LABELS = frozenset({"good", "pass", "correct", "thumbs_up", "up", "true", "1"})
BAD_LABELS = frozenset({"bad", "fail", "incorrect", "thumbs_down", "down", "false", "0"})


@dataclass(frozen=True)
class FeedbackBody:
    request_id: str
    score: float
    label: str | None
    comment: str | None


@dataclass(frozen=True)
class MetricBody:
    """``{"request_id", "metric", "value", "comment"?}``: a value of a metric declared in ``prompts.metrics``."""

    request_id: str
    metric: str
    value: float
    comment: str | None


def parse_metric(body: dict[str, Any], metrics: Mapping[str, Any]) -> MetricBody:
    """A metric's value, checked against its declaration (boolean, or numeric within its range), or a 400."""
    unknown = sorted(set(body) - {"request_id", "metric", "value", "comment"})
    if unknown:
        raise InvalidRequest(f"Unknown parameter {unknown[0]!r}.", param=unknown[0], code="unknown_parameter")
    rid = body.get("request_id")
    if not isinstance(rid, str) or not rid or len(rid) > 255:
        raise InvalidRequest("'request_id' must be a non-empty string (the x-request-id of the call).",
                             param="request_id")
    name = body.get("metric")
    decl = metrics.get(name) if isinstance(name, str) else None
    if decl is None:
        known = ", ".join(sorted(metrics)) or "none are declared"
        raise InvalidRequest(f"Unknown metric {str(name)[:64]!r} (declared under prompts.metrics: {known}).",
                             param="metric", code="unknown_metric")
    v = body.get("value")
    if decl["type"] == "boolean":
        if not isinstance(v, bool):
            raise InvalidRequest(f"'value' of the boolean metric {name!r} must be true or false.", param="value")
        value = float(v)
    else:
        lo, hi = float(decl["min"]), float(decl["max"])
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not lo <= v <= hi:
            raise InvalidRequest(f"'value' of the metric {name!r} must be a number in [{lo:g}, {hi:g}].",
                                 param="value")
        value = float(v)
    comment = body.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT):
        raise InvalidRequest(f"'comment' must be a string of at most {MAX_COMMENT} characters.", param="comment")
    return MetricBody(rid, str(name), value, comment)


def parse_feedback(body: Any, metrics: Mapping[str, Any] | None = None) -> FeedbackBody | MetricBody:
    """The request body (a score or label; or, with ``metric``, a declared metric's value), or a 400 naming the
    parameter."""
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object.", param="body")
    if "metric" in body or "value" in body:
        return parse_metric(body, metrics or {})
    unknown = sorted(set(body) - {"request_id", "score", "label", "comment"})
    if unknown:
        raise InvalidRequest(f"Unknown parameter {unknown[0]!r}.", param=unknown[0], code="unknown_parameter")
    rid = body.get("request_id")
    if not isinstance(rid, str) or not rid or len(rid) > 255:
        raise InvalidRequest("'request_id' must be a non-empty string (the x-request-id of the call).",
                             param="request_id")
    has_score, has_label = body.get("score") is not None, body.get("label") is not None
    if has_score == has_label:
        raise InvalidRequest("Give exactly one of 'score' (a number in [0, 1]) and 'label' (true/false, or "
                             "'good'/'bad').", param="score" if has_score else "label")
    label: str | None = None
    if has_score:
        s = body["score"]
        if isinstance(s, bool) or not isinstance(s, int | float) or not math.isfinite(s) or not 0 <= s <= 1:
            raise InvalidRequest("'score' must be a number in [0, 1].", param="score")
        score = float(s)
    else:
        lab = body["label"]
        if isinstance(lab, bool):
            score, label = float(lab), str(lab).lower()
        elif isinstance(lab, str) and lab.strip().lower() in GOOD_LABELS | BAD_LABELS:
            label = lab.strip().lower()
            score = 1.0 if label in GOOD_LABELS else 0.0
        else:
            raise InvalidRequest("'label' must be true/false or one of 'good', 'bad', 'pass', 'fail', 'correct', "
                                 "'incorrect', 'thumbs_up', 'thumbs_down'.", param="label")
    comment = body.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise InvalidRequest("'comment' must be a string.", param="comment")
    if comment is not None and len(comment) > MAX_COMMENT:
        raise InvalidRequest(f"'comment' is longer than {MAX_COMMENT} characters.", param="comment")
    return FeedbackBody(rid, score, label, comment)


class RecentEmbeddings:
    """The prompt embeddings that calls computed (``CallContext.embedding``), by request id, in memory only: at
    most ``capacity``, each for ``ttl`` seconds. Filled by the recording stage after a call; read by feedback."""

    def __init__(self, capacity: int = 4096, ttl: float = 3600.0) -> None:
        self.capacity = capacity
        self.ttl = ttl
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, request_id: str, vector: Any) -> None:
        import numpy as np  # a stage that computed an embedding has numpy loaded already

        data = np.asarray(vector, dtype="<f4").reshape(-1).tobytes()
        with self._lock:
            self._items[request_id] = (time.monotonic(), data)
            self._items.move_to_end(request_id)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get(self, request_id: str) -> bytes | None:
        with self._lock:
            item = self._items.get(request_id)
        if item is None or time.monotonic() - item[0] > self.ttl:
            return None
        return item[1]


def find_call(conn: sa.Connection, request_id: str, principal_id: str) -> Mapping[str, Any] | None:
    """The caller's own call by our id or its x-request-id (the newest, if it reused one); None otherwise."""
    t = request_log.c
    cols = (t.request_id, t.model, t.route, t.deployment, t.key_id, t.org_id)
    row = conn.execute(sa.select(*cols).where(t.request_id == request_id, t.principal_id == principal_id)).first()
    if row is None:
        row = conn.execute(sa.select(*cols).where(t.client_request_id == request_id, t.principal_id == principal_id)
                           .order_by(t.id.desc()).limit(1)).first()
    return dict(row._mapping) if row is not None else None


def prompt_text(conn: sa.Connection, request_id: str) -> str | None:
    """The prompt's text from the call's audit payload, if its logging mode (``full``) kept it: the text of its
    system and user messages, one per line."""
    payload = conn.execute(sa.select(audit_log.c.payload).where(audit_log.c.request_id == request_id,
                                                                audit_log.c.kind == "call")).scalar()
    if not payload:
        return None
    try:
        request = orjson.loads(payload).get("request") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return None
    texts: list[str] = []
    system = request.get("system")  # an Anthropic body
    if isinstance(system, str):
        texts.append(system)
    for m in request.get("messages") or ():
        if isinstance(m, dict) and m.get("role") in ("system", "user", "developer"):
            texts.append(_text_of(m.get("content")))
    text = "\n".join(t for t in texts if t)
    return text or None


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def store_feedback(conn: sa.Connection, call: Mapping[str, Any], fb: FeedbackBody, principal_id: str,
                   logging: str, embedding: bytes | None) -> dict[str, bool]:
    """Insert (or replace: one rating per request) the feedback; returns what of the prompt was kept."""
    prompt = prompt_text(conn, call["request_id"]) if logging == "full" else None
    row = {"request_id": call["request_id"], "ts": datetime.now(UTC), "principal_id": principal_id,
           "key_id": call["key_id"], "org_id": call["org_id"], "model": call["model"], "route": call["route"],
           "deployment": call["deployment"], "score": fb.score, "label": fb.label,
           "comment": fb.comment if logging != "none" else None, "logging": logging,
           "prompt": prompt.replace("\x00", "") if prompt else None, "embedding": embedding}
    ins = (postgresql.insert(feedback) if conn.dialect.name == "postgresql" else sqlite.insert(feedback))
    conn.execute(ins.values(**row).on_conflict_do_update(
        index_elements=["request_id"], set_={k: v for k, v in row.items() if k != "request_id"}))
    return {"prompt": prompt is not None, "embedding": embedding is not None, "comment": row["comment"] is not None}


def store_metric(conn: sa.Connection, request_id: str, fb: MetricBody, principal_id: str, logging: str,
                 pending: bool) -> None:
    """Insert (or replace: one value per request, metric and rater) a metric's value. ``pending``: the call's record
    is not stored yet; ``request_id`` is then the id the caller gave, matched later
    (:func:`switchyard.prompts.report.match_pending`)."""
    from ..store.prompt_tables import feedback_metrics

    row = {"request_id": request_id, "metric": fb.metric, "value": fb.value, "ts": datetime.now(UTC),
           "principal_id": principal_id, "comment": fb.comment if logging != "none" else None, "pending": pending}
    ins = (postgresql.insert(feedback_metrics) if conn.dialect.name == "postgresql"
           else sqlite.insert(feedback_metrics))
    conn.execute(ins.values(**row).on_conflict_do_update(
        index_elements=["request_id", "metric", "principal_id"],
        set_={k: v for k, v in row.items() if k not in ("request_id", "metric", "principal_id")}))


def read_feedback(conn: sa.Connection, weak: str) -> list[tuple[str | None, bytes | None, float, str]]:
    """(prompt, embedding, score, route or model) of every stored feedback on calls ``weak`` served."""
    t = feedback.c
    rows = conn.execute(sa.select(t.prompt, t.embedding, t.score, t.route, t.model).where(t.deployment == weak)
                        .order_by(t.id))
    return [(r.prompt, r.embedding, float(r.score), r.route or r.model or "") for r in rows]
