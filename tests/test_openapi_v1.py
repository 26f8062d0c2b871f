"""The data plane's OpenAPI document (``GET /v1/openapi.json``) and the 405s of both planes.

The document is served without a key, lists exactly the data-plane routes the app serves, documents every field
that the protocol adapters read, and real replies (plain, streamed, errors in both protocols) validate against it.
The Schemathesis runs in test_fuzz_contract.py then hold it to every reply. A 405 names, in ``Allow``, every method
that the path serves (RFC 9110), whichever plane it is on.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from starlette.routing import Route

from switchyard.protocols import anthropic_messages, openai_chat, openai_embeddings, openai_responses
from switchyard.server.app import create_app
from tests.support.gateway import MASTER_KEY, RunningGateway, run_gateway
from tests.support.governance import Admin, gov_config, no_keepalive_client

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    store = f"sqlite:///{Path(tmp_path_factory.mktemp('openapi_v1'))}/s.db"
    with run_gateway(gov_config(store)) as running:
        yield running


@pytest.fixture(scope="module")
def http(gw: RunningGateway) -> Iterator[httpx.Client]:
    with no_keepalive_client(gw.url) as c:
        yield c


@pytest.fixture(scope="module")
def doc(http: httpx.Client) -> dict[str, Any]:
    r = http.get("/v1/openapi.json")  # no key
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    return body


def _validator(doc: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A JSON Schema validator for ``schema`` whose ``#/components/...`` references resolve in ``doc``."""
    return jsonschema_rs.validator_for({**schema, "components": doc["components"]})


def _check(doc: dict[str, Any], r: httpx.Response, path: str | None = None) -> None:
    """The status is documented for the operation, and the body validates against the documented schema."""
    template = path or r.request.url.path
    op = doc["paths"][template][r.request.method.lower()]
    documented = op["responses"].get(str(r.status_code))
    assert documented is not None, f"{r.request.method} {template} answered {r.status_code}, undocumented"
    assert "x-request-id" in r.headers
    media = r.headers["content-type"].split(";")[0]
    schema = documented["content"][media]["schema"]
    if media == "application/json":
        _validator(doc, schema).validate(r.json())
    else:
        events = [line for line in r.text.split("\n\n") if line.strip()]
        assert events
        for e in events:
            fields = dict(line.split(": ", 1) for line in e.split("\n"))
            _validator(doc, schema).validate(fields)


def test_document_lists_exactly_the_data_plane_routes(gw: RunningGateway, doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1")
    app = create_app(gw.gateway).app
    served = {(m.lower(), re.sub(r"\{(\w+):path\}", r"{\1}", r.path)) for r in app.routes if isinstance(r, Route)
              and not r.path.startswith("/admin") for m in (r.methods or ()) if m != "HEAD"}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented
    assert doc["paths"]["/v1/messages"]["post"]["security"] == [{"apiKey": []}, {"bearer": []}]
    assert doc["paths"]["/health/live"]["get"]["security"] == []


@pytest.mark.parametrize(("schema", "modelled"), [
    ("ChatCompletionRequest", openai_chat._MODELLED),
    ("EmbeddingRequest", openai_embeddings._MODELLED),
    ("MessageRequest", anthropic_messages._MODELLED),
    ("ResponseRequest", openai_responses._MODELLED | {"store", "include", "truncation", "background", "prompt"}),
])
def test_every_field_the_adapters_read_is_documented(doc: dict[str, Any], schema: str,
                                                     modelled: frozenset[str]) -> None:
    properties = set(doc["components"]["schemas"][schema]["properties"])
    assert properties == set(modelled)


def test_the_documented_schemas_refuse_what_the_adapters_refuse(doc: dict[str, Any]) -> None:
    chat = _validator(doc, {"$ref": "#/components/schemas/ChatCompletionRequest"})
    assert chat.is_valid({"model": "m", "messages": HI, "temperature": 2, "unknown": {"kept": True}})
    for bad in ({"model": "m", "messages": []}, {"model": "m", "messages": HI, "temperature": 2.5},
                {"model": "m", "messages": [{"role": "robot", "content": "x"}]},
                {"model": "m", "messages": [{"role": "user"}]},
                {"model": "m", "messages": HI, "n": 0}):
        assert not chat.is_valid(bad), bad
    messages = _validator(doc, {"$ref": "#/components/schemas/MessageRequest"})
    assert messages.is_valid({"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": [{"type": "server_tool_result_of_the_future", "x": 1}]}]})
    assert not messages.is_valid({"model": "m", "messages": HI})  # max_tokens is required
    assert not messages.is_valid({"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]})


def test_real_replies_match_the_document(gw: RunningGateway, http: httpx.Client, doc: dict[str, Any]) -> None:
    _check(doc, http.post("/v1/chat/completions", json={"model": "sim-a", "messages": HI}, headers=AUTH))
    _check(doc, http.post("/chat/completions", json={"model": "sim-a", "messages": HI, "stream": True,
                                                     "stream_options": {"include_usage": True}}, headers=AUTH))
    _check(doc, http.post("/v1/chat/completions", json={"model": "sim-a", "messages": HI, "n": "2"}, headers=AUTH))
    _check(doc, http.post("/v1/chat/completions", json={"model": "nope", "messages": HI}, headers=AUTH))
    _check(doc, http.post("/v1/chat/completions", json={"model": "sim-a", "messages": HI}))
    _check(doc, http.post("/v1/embeddings", json={"model": "sim-c", "input": ["a", "b"]}, headers=AUTH))
    _check(doc, http.get("/v1/models", headers=AUTH))
    _check(doc, http.get("/v1/models/sim-a", headers=AUTH), "/v1/models/{model}")
    _check(doc, http.get("/v1/models/nope", headers=AUTH), "/v1/models/{model}")
    anthropic = {"x-api-key": MASTER_KEY}
    body = {"model": "sim-a", "max_tokens": 16, "messages": HI}
    _check(doc, http.post("/v1/messages", json=body, headers=anthropic))
    _check(doc, http.post("/v1/messages", json={**body, "stream": True}, headers=anthropic))
    _check(doc, http.post("/v1/messages", json={"model": "sim-a", "messages": HI}, headers=anthropic))
    _check(doc, http.post("/v1/messages/count_tokens", json=body, headers=anthropic))
    _check(doc, http.post("/v1/messages/count_tokens", json=body))
    _check(doc, http.get("/health/live"))
    _check(doc, http.get("/health/ready"))


@pytest.mark.parametrize(("method", "path", "allow", "shape"), [
    ("GET", "/v1/chat/completions", "POST", "openai"),
    ("PUT", "/v1/embeddings", "POST", "openai"),
    ("DELETE", "/v1/models", "GET, HEAD", "openai"),
    ("GET", "/v1/messages", "POST", "anthropic"),
    ("POST", "/health/live", "GET, HEAD", "openai"),
    ("POST", "/v1/openapi.json", "GET, HEAD", "openai"),
    ("PUT", "/admin/orgs", "GET, HEAD, POST", "openai"),
    ("PUT", "/admin/orgs/org_x", "DELETE, GET, HEAD, PATCH", "openai"),
    ("GET", "/admin/keys/vk_x/revoke", "POST", "openai"),
    ("TRACE", "/admin/whoami", "GET, HEAD", "openai"),
])
def test_a_405_says_which_methods_the_path_serves(http: httpx.Client, method: str, path: str, allow: str,
                                                  shape: str) -> None:
    r = http.request(method, path, headers=AUTH)
    assert r.status_code == 405
    assert r.headers["allow"] == allow
    body = r.json()
    if shape == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    else:
        assert body["error"]["code"] == "method_not_allowed"


def test_the_admin_document_links_creations_to_what_they_created(http: httpx.Client) -> None:
    doc = http.get("/admin/openapi.json").json()
    links = doc["paths"]["/admin/keys"]["post"]["responses"]["201"]["links"]
    assert {link["operationId"] for link in links.values()} == {"get_key", "update_key", "delete_key", "revoke_key"}
    assert {str(link["parameters"]["key_id"]) for link in links.values()} == {"$response.body#/id"}
    usd = doc["components"]["schemas"]["BudgetCreate"]["properties"]["max_usd"]
    string = next(s for s in usd["anyOf"] if s.get("type") == "string")
    assert not re.fullmatch(string["pattern"], "") and re.fullmatch(string["pattern"], "12.5")


def test_paging_past_what_the_store_holds_is_a_400(gw: RunningGateway) -> None:
    a = Admin(gw.url)
    r = a.request("GET", "/admin/teams", offset=2**64)
    assert r.status_code == 400 and r.json()["error"]["param"] == "offset"
    r = a.request("GET", "/admin/audit", after_seq=2**63)
    assert r.status_code == 400 and r.json()["error"]["param"] == "after_seq"
    a.close()


def test_a_huge_embedding_is_refused_not_built(http: httpx.Client) -> None:
    """Found by the fuzzer: ``dimensions: 10**12`` made the simulated model build the vector (18 GB and counting)."""
    r = http.post("/v1/embeddings", json={"model": "sim-c", "input": "a", "dimensions": 10**12}, headers=AUTH)
    assert r.status_code == 400 and r.json()["error"]["param"] == "dimensions"


def test_a_whole_number_written_as_a_float_is_an_integer(http: httpx.Client) -> None:
    """JSON has one number type, and JSON Schema counts ``7.0`` as an integer: so do we (found by the fuzzer)."""
    r = http.post("/v1/chat/completions", json={"model": "sim-a", "messages": HI, "n": 2.0, "max_tokens": 5.0},
                  headers=AUTH)
    assert r.status_code == 200, r.text
    assert len(r.json()["choices"]) == 2
    r = http.post("/v1/chat/completions", json={"model": "sim-a", "messages": HI, "n": 2.5}, headers=AUTH)
    assert r.status_code == 400 and r.json()["error"]["param"] == "n"
    r = http.post("/v1/embeddings", json={"model": "sim-c", "input": [[1.0, 2.0], [3, 4]]}, headers=AUTH)
    assert r.status_code == 200 and len(r.json()["data"]) == 2
