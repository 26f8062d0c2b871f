"""``POST /v1/feedback`` over HTTP: a key rates its own requests only (another key's request is the same 404 as an
unknown one), bad bodies are OpenAI-format 400s, and what is stored follows the key's logging mode: under zero
retention the outcome and the call's embedding, never the prompt's text nor the comment. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import sqlalchemy as sa

from switchyard.config.ledger import SpoolSettings
from switchyard.governance.feedback import read_feedback
from switchyard.governance.spend import SpendWriter
from switchyard.stages import CallContext, Stage
from switchyard.store import Store
from switchyard.store.feedback_tables import feedback
from tests.support.gateway import RunningGateway, run_gateway
from tests.support.governance import Admin, gov_config, sdk_http_client
from tests.support.pg import pg_database_url

PROMPT = "the secret recipe is 42 bananas"
VECTOR = np.linspace(-1, 1, 256, dtype=np.float32)


class Embeds(Stage):
    """Stands in for auto routing: the call computed the prompt's embedding."""

    def before(self, call: CallContext) -> None:
        call.embedding = VECTOR


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def gw(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway,
                                                                                                   Store]]:
    tmp = tmp_path_factory.mktemp("feedback")
    with contextlib_url(request.param, tmp) as url:
        store = Store.open(url)
        writer = SpendWriter(store.engine, SpoolSettings(dir=str(tmp / "spool"), flush_interval=0.05))
        try:
            with run_gateway(gov_config(url), recorder=writer, extra_stages=[Embeds()]) as running:
                yield running, store
        finally:
            store.close()


def contextlib_url(kind: str, tmp: Any) -> Any:
    import contextlib

    if kind == "postgres":
        return pg_database_url()
    return contextlib.nullcontext(f"sqlite:///{tmp}/s.db")


def call(gw: RunningGateway, secret: str) -> str:
    with openai.OpenAI(base_url=gw.openai_base, api_key=secret, max_retries=0, http_client=sdk_http_client()) as c:
        r = c.chat.completions.with_raw_response.create(model="fast", messages=[{"role": "user", "content": PROMPT}])
        r.parse()
        return str(r.headers["x-request-id"])


def rate(gw: RunningGateway, secret: str, body: Any) -> httpx.Response:
    return httpx.post(gw.url + "/v1/feedback", json=body, headers={"authorization": f"Bearer {secret}"})


def stored(store: Store, request_id: str) -> dict[str, Any]:
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(feedback).where(feedback.c.request_id == request_id)).one()
    return dict(row._mapping)


def test_a_key_rates_its_own_request_and_zero_retention_keeps_no_text(gw: tuple[RunningGateway, Store]) -> None:
    running, store = gw
    admin = Admin(running.url)
    org = admin.org()
    user = admin.user(team_id=admin.team(org["id"])["id"])
    mine = admin.new_key(user_id=user["id"], logging="none")
    other = admin.new_key(user_id=user["id"], logging="full")
    rid = call(running, mine["secret"])
    r = rate(running, mine["secret"], {"request_id": rid, "label": "bad", "comment": f"wrong: {PROMPT}"})
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == {"prompt": False, "embedding": True, "comment": False}
    row = stored(store, rid)
    assert row["score"] == 0.0 and row["logging"] == "none" and row["prompt"] is None and row["comment"] is None
    assert np.array_equal(np.frombuffer(row["embedding"], dtype="<f4"), VECTOR)
    assert PROMPT not in repr(row)
    # someone else's request and an unknown one: the same 404
    theirs = rate(running, other["secret"], {"request_id": rid, "score": 1})
    unknown = rate(running, other["secret"], {"request_id": "req_nope", "score": 1})
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["error"]["code"] == unknown.json()["error"]["code"] == "request_not_found"
    assert stored(store, rid)["score"] == 0.0  # untouched


def test_full_logging_keeps_the_prompt_and_a_second_rating_replaces(gw: tuple[RunningGateway, Store]) -> None:
    running, store = gw
    admin = Admin(running.url)
    org = admin.org()
    user = admin.user(team_id=admin.team(org["id"])["id"])
    key = admin.new_key(user_id=user["id"], logging="full")
    rid = call(running, key["secret"])
    assert rate(running, key["secret"], {"request_id": rid, "score": 0.25}).status_code == 200
    r = rate(running, key["secret"], {"request_id": rid, "score": 0.75, "comment": "fine"})
    assert r.status_code == 200 and r.json()["stored"]["prompt"] is True
    row = stored(store, rid)
    assert (row["score"], row["prompt"], row["comment"], row["logging"]) == (0.75, PROMPT, "fine", "full")
    with store.engine.connect() as conn:
        assert any(p == PROMPT and s == 0.75 for p, _, s, _ in read_feedback(conn, row["deployment"]))


@pytest.mark.parametrize("body, param", [
    ({"score": 1}, "request_id"),
    ({"request_id": "x"}, "label"),
    ({"request_id": "x", "score": 1, "label": "good"}, "score"),
    ({"request_id": "x", "score": 1.5}, "score"),
    ({"request_id": "x", "score": True}, "score"),
    ({"request_id": "x", "label": "meh"}, "label"),
    ({"request_id": "x", "score": 1, "comment": 3}, "comment"),
    ({"request_id": "x", "score": 1, "extra": 1}, "extra"),
    ([1, 2], "body"),
])
def test_bad_bodies_are_400s_in_the_openai_format(gw: tuple[RunningGateway, Store], body: Any, param: str) -> None:
    running, _ = gw
    admin = Admin(running.url)
    org = admin.org()
    key = admin.new_key(user_id=admin.user(team_id=admin.team(org["id"])["id"])["id"])
    r = rate(running, key["secret"], body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error" and err["message"]


def test_feedback_needs_a_key(gw: tuple[RunningGateway, Store]) -> None:
    running, _ = gw
    r = httpx.post(running.url + "/v1/feedback", json={"request_id": "x", "score": 1})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
