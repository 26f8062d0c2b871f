"""The ``prompt`` field of ``/v1/responses``, over HTTP with the openai SDK. ``{name, label | version, variables}``
is a managed prompt: rendered, prepended to the input (which may then be left out), its version's model applied,
named in ``x-switchyard-prompt`` and in the call record, on any provider (a simulated one, and an ``api: responses``
deployment, which gets the rendered input translated). ``{id, version, variables}`` is OpenAI's own stored prompt:
passed through as sent to an ``api: responses`` deployment, a 400 naming ``prompt.id`` anywhere else (another
provider, chat completions); both ``name`` and ``id`` is a 400."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import sqlalchemy as sa

from switchyard.config.ledger import SpoolSettings
from switchyard.governance.spend import SpendWriter
from switchyard.store import Store
from switchyard.store.prompt_tables import request_log
from tests.support.fake_openai import FakeOpenAI, make_fake_openai
from tests.support.gateway import RunningGateway, run_gateway
from tests.support.governance import Admin, gov_config, sdk_http_client, unique
from tests.test_prompts import Seen

SPEC = {
    "model": "sim-b",
    "parameters": {"temperature": 0.25},
    "variables": {"type": "object", "properties": {"customer": {"type": "string"}}, "required": ["customer"]},
    "messages": [{"role": "system", "content": "You help {{ customer }}."},
                 {"role": "user", "content": "Say hello to {{ customer }}."}],
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    fake = make_fake_openai()
    with fake.serve():
        yield fake


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream: FakeOpenAI) -> Iterator[tuple[RunningGateway, Store,
                                                                                          Seen]]:
    tmp = tmp_path_factory.mktemp("promptresp")
    url = f"sqlite:///{tmp}/s.db"
    store = Store.open(url)
    writer = SpendWriter(store.engine, SpoolSettings(dir=str(tmp / "spool"), flush_interval=0.05))
    seen = Seen()
    cfg = gov_config(url, prompts={"refresh_s": 0.2})
    cfg["providers"]["oai"] = {"type": "openai", "base_url": f"{upstream.base_url}/v1", "api_key": "sk-upstream",
                               "api": "responses"}
    cfg["deployments"].append({"name": "oai-responses", "provider": "oai", "model": "gpt-4o-mini"})
    try:
        with run_gateway(cfg, recorder=writer, extra_stages=[seen]) as running:
            yield running, store, seen
    finally:
        store.close()


def _setup(running: RunningGateway) -> tuple[str, str]:
    root = Admin(running.url)
    org = root.org()
    team = root.team(org["id"])
    _, secret = root.user_with_key("team_admin", org_id=org["id"], team_id=team["id"])
    me = root.as_key(secret)
    name = unique("greeter")
    p = me.post("/admin/prompts", {"name": name, "team_id": team["id"]})
    me.post(f"/admin/prompts/{p['id']}/versions", {"spec": SPEC, "labels": ["production"]})
    root.close()
    return name, secret


def _client(running: RunningGateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=running.openai_base, api_key=key, max_retries=0, http_client=sdk_http_client())


def _recorded(store: Store, request_id: str) -> Any:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with store.engine.connect() as conn:
            row = conn.execute(sa.select(request_log).where(request_log.c.request_id == request_id)).first()
        if row is not None:
            return row
        time.sleep(0.05)
    raise AssertionError(f"no call record for {request_id}")


def test_a_managed_prompt_on_responses(gw: tuple[RunningGateway, Store, Seen]) -> None:
    running, store, seen = gw
    name, secret = _setup(running)
    with _client(running, secret) as c:
        # the SDK's own prompt parameter, with a managed prompt's fields; no input: the prompt brings it
        raw = c.responses.with_raw_response.create(
            model="prompt", prompt={"name": name, "label": "production", "variables": {"customer": "Ada"}})  # type: ignore[typeddict-unknown-key]
        r = raw.parse()
        assert r.output_text and r.status == "completed"
        assert raw.headers["x-switchyard-prompt"] == f"{name}@1"
        assert raw.headers["x-switchyard-deployment"] == "sim-b"  # the version's model
        req = seen.requests[-1]
        assert [(m.role, m.text()) for m in req.messages] == [("system", "You help Ada."),
                                                              ("user", "Say hello to Ada.")]
        assert req.temperature == 0.25 and "prompt" not in req.extra
        row = _recorded(store, raw.headers["x-request-id"])
        assert row.prompt == f"{name}@1" and row.deployment == "sim-b"
        # with input and instructions of its own (after the prompt's messages), streamed
        with c.responses.with_streaming_response.create(
                model="prompt", instructions="Be terse.", input="And my order?", stream=True,
                extra_body={"prompt": {"name": name, "version": 1, "variables": {"customer": "Bo"}}}) as s:
            assert s.headers["x-switchyard-prompt"] == f"{name}@1"
            kinds = [e.type for e in s.parse()]
        assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
        assert [m.text() for m in seen.requests[-1].messages] == ["You help Bo.", "Say hello to Bo.", "Be terse.",
                                                                  "And my order?"]
        # a missing variable: OpenAI's 400, naming it
        with pytest.raises(openai.BadRequestError) as e:
            c.responses.create(model="prompt", input="x", extra_body={"prompt": {"name": name, "variables": {}}})
        assert "customer" in e.value.message


def test_a_managed_prompt_reaches_a_responses_deployment_translated(gw: tuple[RunningGateway, Store, Seen],
                                                                    upstream: FakeOpenAI) -> None:
    running, _, _ = gw
    name, secret = _setup(running)
    upstream.reset()
    with _client(running, secret) as c:
        raw = c.responses.with_raw_response.create(
            model="oai-responses", input="Where is it?", service_tier="default",
            extra_body={"prompt": {"name": name, "variables": {"customer": "Cy"}}})
        assert raw.parse().output_text == "Echo: Where is it?"
    assert raw.headers["x-switchyard-prompt"] == f"{name}@1"
    sent = upstream.requests[-1].json
    assert "prompt" not in sent  # the gateway answered it
    assert [i["role"] for i in sent["input"]] == ["system", "user", "user"]
    assert sent["service_tier"] == "default"  # the request's other fields go as sent


def test_an_openai_stored_prompt_passes_through_or_is_refused(gw: tuple[RunningGateway, Store, Seen],
                                                              upstream: FakeOpenAI) -> None:
    running, _, _ = gw
    name, secret = _setup(running)
    stored = {"id": "pmpt_abc123", "version": "2", "variables": {"city": "Paris"}}
    upstream.reset()
    with _client(running, secret) as c:
        raw = c.responses.with_raw_response.create(model="oai-responses", input="Weather?", prompt=stored)  # type: ignore[arg-type]
        assert raw.parse().output_text == "Echo: Weather?"
        assert "x-switchyard-prompt" not in raw.headers
        assert upstream.requests[-1].json["prompt"] == stored  # as sent
        n = len(upstream.requests)
        with pytest.raises(openai.BadRequestError) as other:  # a provider that is not OpenAI's Responses API
            c.responses.create(model="sim-a", input="Weather?", prompt=stored)  # type: ignore[arg-type]
        assert other.value.body["param"] == "prompt.id" and "pmpt_abc123" in other.value.message  # type: ignore[index]
        with pytest.raises(openai.BadRequestError) as chat:  # chat completions has no stored prompts
            c.chat.completions.create(model="oai-responses", messages=[{"role": "user", "content": "x"}],
                                      extra_body={"prompt": stored})
        assert chat.value.body["param"] == "prompt.id"  # type: ignore[index]
        with pytest.raises(openai.BadRequestError) as both:
            c.responses.create(model="oai-responses", input="x",
                               extra_body={"prompt": {**stored, "name": name}})
        assert both.value.body["param"] == "prompt.id"  # type: ignore[index]
        assert len(upstream.requests) == n  # nothing refused went upstream
