"""Managed prompts over HTTP: the admin API publishes immutable versions and moves labels (audited, under RBAC);
a chat (openai SDK) or messages (anthropic SDK) request naming a prompt is rendered in the sandbox, prepended to
its own messages, takes the version's model and parameters, and names the version in x-switchyard-prompt; bad
variables and templates are 400s naming them; sandbox escapes are refused; metric feedback is checked."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
import sqlalchemy as sa

from switchyard.config.ledger import SpoolSettings
from switchyard.governance.spend import SpendWriter
from switchyard.messages import ChatRequest
from switchyard.stages import CallContext, Stage
from switchyard.store import Store
from switchyard.store.audit_tables import audit_log
from switchyard.store.prompt_tables import feedback_metrics
from tests.support.gateway import RunningGateway, run_gateway
from tests.support.governance import Admin, gov_config, sdk_http_client, unique

SPEC = {
    "model": "sim-b",
    "parameters": {"temperature": 0.25, "max_tokens": 50},
    "variables": {"type": "object", "properties": {"customer": {"type": "string"}, "tone": {"enum": ["warm", "dry"]}},
                  "required": ["customer"]},
    "messages": [{"role": "system",
                  "content": "You help {{ customer }}.\n{% if tone is defined %}Be {{ tone }}.{% endif %}"}],
}
METRICS = {"helpful": {"type": "boolean"}, "stars": {"type": "numeric", "min": 1, "max": 5}}


class Seen(Stage):
    """Keeps the request as the router receives it (after the prompt stage)."""

    def __init__(self) -> None:
        self.requests: list[ChatRequest] = []

    def routed(self, call: CallContext) -> None:
        assert isinstance(call.request, ChatRequest)
        self.requests.append(call.request)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway, Store, Seen]]:
    tmp = tmp_path_factory.mktemp("prompts")
    url = f"sqlite:///{tmp}/s.db"
    store = Store.open(url)
    writer = SpendWriter(store.engine, SpoolSettings(dir=str(tmp / "spool"), flush_interval=0.05))
    seen = Seen()
    try:
        with run_gateway(gov_config(url, prompts={"metrics": METRICS, "refresh_s": 0.2}), recorder=writer,
                         extra_stages=[seen]) as running:
            yield running, store, seen
    finally:
        store.close()


def _setup(running: RunningGateway, spec: dict[str, Any] | None = None) -> tuple[Admin, str, str, dict[str, Any]]:
    admin = Admin(running.url)
    org = admin.org()
    team = admin.team(org["id"])
    _, secret = admin.user_with_key("team_admin", org_id=org["id"], team_id=team["id"])
    name = unique("support")
    me = admin.as_key(secret)
    prompt = me.post("/admin/prompts", {"name": name, "team_id": team["id"]})
    me.post(f"/admin/prompts/{prompt['id']}/versions", {"spec": spec or SPEC, "labels": ["production"]})
    return me, name, secret, prompt


def test_publish_label_and_use_with_the_openai_sdk(gw: tuple[RunningGateway, Store, Seen]) -> None:
    running, store, seen = gw
    admin, name, secret, prompt = _setup(running)
    with openai.OpenAI(base_url=running.openai_base, api_key=secret, max_retries=0,
                       http_client=sdk_http_client()) as c:
        r = c.chat.completions.with_raw_response.create(
            model="prompt", messages=[{"role": "user", "content": "where is my order?"}],
            extra_body={"prompt": {"name": name, "label": "production", "variables": {"customer": "Ada",
                                                                                      "tone": "warm"}}})
        r.parse()
    assert r.headers["x-switchyard-prompt"] == f"{name}@1"
    assert r.headers["x-switchyard-deployment"] == "sim-b"  # the version's model
    req = seen.requests[-1]
    assert [m.role for m in req.messages] == ["system", "user"]
    assert req.messages[0].text() == "You help Ada.\nBe warm."
    assert req.temperature == 0.25 and req.max_tokens == 50 and "prompt" not in req.extra
    # a second version; the label still serves version 1 until it moves
    v2 = {**SPEC, "messages": [{"role": "system", "content": "Hi {{ customer }}!"}]}
    out = admin.post(f"/admin/prompts/{prompt['id']}/versions", {"spec": v2})
    assert out["version"] == 2 and not out["unchanged"]
    again = admin.post(f"/admin/prompts/{prompt['id']}/versions", {"spec": v2})
    assert again["version"] == 2 and again["unchanged"]  # nothing changed: nothing published
    moved = admin.call("PUT", f"/admin/prompts/{prompt['id']}/labels/production", {"version": 2})
    assert moved["previous"] == 1
    diff = admin.get(f"/admin/prompts/{prompt['id']}/diff", v1=1, v2=2)["diff"]
    assert "-  content: |-" in diff or "-- role: system" in diff or "+  content: Hi {{ customer }}!" in diff
    with openai.OpenAI(base_url=running.openai_base, api_key=secret, max_retries=0,
                       http_client=sdk_http_client()) as c:
        r = c.chat.completions.with_raw_response.create(
            model="sim-a", temperature=0.9, messages=[{"role": "user", "content": "hi"}],
            extra_body={"prompt": {"name": name, "variables": {"customer": "Bo"}}})
        r.parse()
    assert r.headers["x-switchyard-prompt"] == f"{name}@2"
    assert r.headers["x-switchyard-deployment"] == "sim-a"  # the request's own model and temperature win
    assert seen.requests[-1].temperature == 0.9 and seen.requests[-1].messages[0].text() == "Hi Bo!"
    with store.engine.connect() as conn:
        actions = [r.action for r in conn.execute(sa.select(audit_log.c.action).where(
            audit_log.c.target == prompt["id"]))]
    assert actions.count("prompt.version.create") == 2 and actions.count("prompt.label.update") == 2


def test_use_with_the_anthropic_sdk(gw: tuple[RunningGateway, Store, Seen]) -> None:
    running, _, seen = gw
    _, name, secret, _ = _setup(running)
    with anthropic.Anthropic(base_url=running.url, api_key=secret, max_retries=0,
                             http_client=sdk_http_client()) as c:
        r = c.messages.with_raw_response.create(
            model="prompt", max_tokens=20, messages=[{"role": "user", "content": "hello"}],
            extra_body={"prompt": {"name": name, "version": 1, "variables": {"customer": "Cy"}}})
        r.parse()
    assert r.headers["x-switchyard-prompt"] == f"{name}@1"
    assert seen.requests[-1].messages[0].text().startswith("You help Cy.")
    assert seen.requests[-1].max_tokens == 20  # the request's own
    # a wrong variable: a 400 in Anthropic's format, naming it
    with anthropic.Anthropic(base_url=running.url, api_key=secret, max_retries=0,
                             http_client=sdk_http_client()) as c, pytest.raises(anthropic.BadRequestError) as e:
        c.messages.create(model="prompt", max_tokens=20, messages=[{"role": "user", "content": "hello"}],
                          extra_body={"prompt": {"name": name, "variables": {"customer": "Cy", "tone": "loud"}}})
    assert e.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "tone" in e.value.body["error"]["message"]  # type: ignore[index]


@pytest.mark.parametrize("variables, param", [
    ({}, "prompt.variables.customer"),
    ({"customer": 3}, "prompt.variables.customer"),
])
def test_missing_or_wrong_variables_are_400s_naming_them(gw: tuple[RunningGateway, Store, Seen],
                                                         variables: dict[str, Any], param: str) -> None:
    running, _, _ = gw
    _, name, secret, _ = _setup(running)
    with openai.OpenAI(base_url=running.openai_base, api_key=secret, max_retries=0,
                       http_client=sdk_http_client()) as c, pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="prompt", messages=[{"role": "user", "content": "x"}],
                                  extra_body={"prompt": {"name": name, "variables": variables}})
    err = e.value.body
    assert isinstance(err, dict) and err["param"] == param and "customer" in err["message"]


def test_unknown_prompt_is_a_404(gw: tuple[RunningGateway, Store, Seen]) -> None:
    running, _, _ = gw
    _, _, secret, _ = _setup(running)
    with openai.OpenAI(base_url=running.openai_base, api_key=secret, max_retries=0,
                       http_client=sdk_http_client()) as c, pytest.raises(openai.NotFoundError) as e:
        c.chat.completions.create(model="prompt", messages=[{"role": "user", "content": "x"}],
                                  extra_body={"prompt": {"name": "nope", "variables": {}}})
    assert isinstance(e.value.body, dict) and e.value.body["code"] == "prompt_not_found"


ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{{ request.__class__ }}{{ self.__init__.__globals__ }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
]


@pytest.mark.parametrize("payload", ESCAPES)
def test_sandbox_escapes_are_refused(gw: tuple[RunningGateway, Store, Seen], payload: str) -> None:
    running, _, _ = gw
    spec = {"model": "sim-a", "messages": [{"role": "system", "content": payload}]}
    _, name, secret, _ = _setup(running, spec)
    with openai.OpenAI(base_url=running.openai_base, api_key=secret, max_retries=0,
                       http_client=sdk_http_client()) as c, pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="prompt", messages=[{"role": "user", "content": "x"}],
                                  extra_body={"prompt": {"name": name, "variables": {}}})
    assert isinstance(e.value.body, dict) and e.value.body["code"] == "prompt_refused"
    assert "unsafe" in e.value.body["message"] and "<class" not in e.value.body["message"]


def test_template_errors_are_named_at_publish(gw: tuple[RunningGateway, Store, Seen]) -> None:
    running, _, _ = gw
    admin, _, _, prompt = _setup(running)
    bad = {"messages": [{"role": "system", "content": "ok"}, {"role": "user", "content": "line one\n{{ oops }"}]}
    r = admin.request("POST", f"/admin/prompts/{prompt['id']}/versions", {"spec": bad})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "template_syntax_error" and err["param"] == "messages[1].content"
    assert "line 2" in err["message"]
    undeclared = {**SPEC, "messages": [{"role": "system", "content": "{{ customer }} {{ secret_sauce }}"}]}
    r = admin.request("POST", f"/admin/prompts/{prompt['id']}/versions", {"spec": undeclared})
    assert r.status_code == 400 and r.json()["error"]["code"] == "undeclared_variable"
    assert "secret_sauce" in r.json()["error"]["message"]
    assert admin.get(f"/admin/prompts/{prompt['id']}")["latest_version"] == 1  # nothing half-written


def test_members_read_and_only_admins_publish(gw: tuple[RunningGateway, Store, Seen]) -> None:
    running, _, _ = gw
    root = Admin(running.url)
    _, _, _, prompt = _setup(running)
    member_key = root.new_key(user_id=root.user(role="member", org_id=prompt["org_id"],
                                                team_id=prompt["team_id"])["id"])["secret"]
    member = root.as_key(member_key)
    assert member.get(f"/admin/prompts/{prompt['id']}")["labels"] == {"production": 1}
    r = member.request("POST", f"/admin/prompts/{prompt['id']}/versions", {"spec": SPEC})
    assert r.status_code == 403
    r = member.request("PUT", f"/admin/prompts/{prompt['id']}/labels/production", {"version": 1})
    assert r.status_code == 403
    outsider = root.as_key(root.user_with_key("org_admin", org_id=root.org()["id"])[1])
    assert outsider.request("GET", f"/admin/prompts/{prompt['id']}").status_code == 404


def test_metric_feedback(gw: tuple[RunningGateway, Store, Seen]) -> None:
    running, store, _ = gw
    _, name, secret, _ = _setup(running)
    with openai.OpenAI(base_url=running.openai_base, api_key=secret, max_retries=0,
                       http_client=sdk_http_client()) as c:
        r = c.chat.completions.with_raw_response.create(
            model="prompt", messages=[{"role": "user", "content": "x"}],
            extra_body={"prompt": {"name": name, "variables": {"customer": "Ed"}}})
        r.parse()
    rid = r.headers["x-request-id"]

    def post(body: dict[str, Any]) -> httpx.Response:
        return httpx.post(running.url + "/v1/feedback", json=body, headers={"authorization": f"Bearer {secret}"})

    assert post({"request_id": rid, "metric": "stars", "value": 4, "comment": "ok"}).status_code == 200
    assert post({"request_id": rid, "metric": "helpful", "value": True}).status_code == 200
    bad = post({"request_id": rid, "metric": "stars", "value": 9})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "value"
    unknown = post({"request_id": rid, "metric": "vibes", "value": 1})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unknown_metric"
    assert post({"request_id": "req_nope", "metric": "stars", "value": 3}).status_code == 404
    assert post({"request_id": rid, "score": 1}).status_code == 200  # the score form still works
    with store.engine.connect() as conn:
        rows = {r.metric: r.value for r in conn.execute(sa.select(feedback_metrics)
                                                        .where(feedback_metrics.c.request_id == rid))}
    assert rows == {"stars": 4.0, "helpful": 1.0}


def test_a_streamed_call_names_the_prompt_too(gw: tuple[RunningGateway, Store, Seen]) -> None:
    running, _, seen = gw
    _, name, secret, _ = _setup(running)
    with openai.OpenAI(base_url=running.openai_base, api_key=secret, max_retries=0,
                       http_client=sdk_http_client()) as c:
        r = c.chat.completions.with_raw_response.create(
            model="prompt", messages=[], stream=True,
            extra_body={"prompt": {"name": name, "variables": {"customer": "Flo"}}})
        chunks = list(r.parse())
    assert chunks and r.headers["x-switchyard-prompt"] == f"{name}@1"
    assert [m.role for m in seen.requests[-1].messages] == ["system"]
