"""Every failure is an OpenAI error object with the right status; never a traceback, never a 500 for a client
mistake. Upstream failures are named."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import USER_KEY, RunningGateway, base_config, run_gateway
from tests.support.servers import free_port

MAX_BODY = 4096


@pytest.fixture(scope="module")
def gw(fake_openai_server: FakeOpenAI) -> Iterator[RunningGateway]:
    up = fake_openai_server.base_url
    cfg = base_config(
        server={"max_body_bytes": MAX_BODY, "request_timeout": 30},
        providers={
            "up": {"type": "openai", "base_url": f"{up}/v1", "api_key": "sk-upstream"},
            "slow": {"type": "openai", "base_url": f"{up}/v1", "api_key": "sk-upstream", "timeout": 0.5},
            "down": {"type": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1", "connect_timeout": 1},
        },
        deployments=[
            {"name": "gpt-4o-mini", "provider": "up"},
            {"name": "slow-model", "provider": "slow", "model": "gpt-4o-mini"},
            {"name": "down-model", "provider": "down"},
            {"name": "text-only", "provider": "up", "model": "gpt-4o-mini", "capabilities": ["chat"],
             "context_window": 100},
        ],
    )
    with run_gateway(cfg) as running:
        yield running


@pytest.fixture
def http(gw: RunningGateway, fake_openai: FakeOpenAI) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.openai_base, headers={"authorization": f"Bearer {USER_KEY}"}, timeout=10) as c:
        yield c


@pytest.fixture
def client(gw: RunningGateway, fake_openai: FakeOpenAI) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0) as c:
        yield c


def error_of(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert "Traceback" not in resp.text
    body = resp.json()
    assert set(body) == {"error"}
    err: dict[str, Any] = body["error"]
    assert {"message", "type", "param", "code"} <= set(err)
    assert err["message"]
    return err


GOOD = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def test_malformed_json(http: httpx.Client) -> None:
    err = error_of(http.post("/chat/completions", content=b'{"model": "gpt-4o-mini", "messages": [', headers={
        "content-type": "application/json"}), 400)
    assert err["param"] == "body" and err["code"] == "invalid_json"


def test_empty_body(http: httpx.Client) -> None:
    err = error_of(http.post("/chat/completions", content=b""), 400)
    assert err["param"] == "body" and "empty" in err["message"]


def test_body_that_is_not_an_object(http: httpx.Client) -> None:
    err = error_of(http.post("/chat/completions", json=[1, 2]), 400)
    assert err["param"] == "body"


def test_oversized_body(http: httpx.Client) -> None:
    big = {**GOOD, "messages": [{"role": "user", "content": "x" * (MAX_BODY * 2)}]}
    err = error_of(http.post("/chat/completions", json=big), 400)
    assert err["param"] == "body" and str(MAX_BODY) in err["message"]


def test_oversized_body_without_content_length(http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * 1024
        yield b'"}]}'

    err = error_of(http.post("/chat/completions", content=chunks()), 400)
    assert err["param"] == "body"


def test_missing_messages(http: httpx.Client) -> None:
    err = error_of(http.post("/chat/completions", json={"model": "gpt-4o-mini"}), 400)
    assert err["param"] == "messages" and err["code"] == "missing_required_parameter"


def test_missing_model(http: httpx.Client) -> None:
    err = error_of(http.post("/chat/completions", json={"messages": GOOD["messages"]}), 400)
    assert err["param"] == "model"


def test_empty_messages(http: httpx.Client) -> None:
    err = error_of(http.post("/chat/completions", json={**GOOD, "messages": []}), 400)
    assert err["param"] == "messages"


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"temperature": "hot"}, "temperature"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"n": "two"}, "n"),
        ({"stream": "yes"}, "stream"),
        ({"stop": 3}, "stop"),
        ({"tools": {"type": "function"}}, "tools"),
        ({"tools": [{"type": "function"}]}, "tools[0].function"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"messages": "hello"}, "messages"),
        ({"messages": [{"content": "no role"}]}, "messages[0].role"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content[0].image_url"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"model": 4}, "model"),
        ({"metadata": "m"}, "metadata"),
    ],
)
def test_wrongly_typed_fields_name_the_parameter(http: httpx.Client, patch: dict[str, Any], param: str) -> None:
    err = error_of(http.post("/chat/completions", json={**GOOD, **patch}), 400)
    assert err["param"] == param
    assert param.split(".")[0].split("[")[0] in err["message"]


def test_the_sdk_raises_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}],
                                       temperature="hot")  # type: ignore[arg-type]
    assert info.value.param == "temperature"


def test_unknown_model(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-99", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "model_not_found" and info.value.param == "model"
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="gpt-99", input="x")


def test_bad_and_missing_keys(gw: RunningGateway) -> None:
    with openai.OpenAI(base_url=gw.openai_base, api_key="sk-wrong", max_retries=0) as c, pytest.raises(
            openai.AuthenticationError) as info:
        c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "invalid_api_key"
    with httpx.Client() as h:
        err = error_of(h.post(gw.openai_base + "/chat/completions", json=GOOD), 401)
        assert "Bearer" in err["message"]
        error_of(h.get(gw.openai_base + "/models", headers={"authorization": "Basic abc"}), 401)
        error_of(h.post(gw.openai_base + "/embeddings", json={}), 401)


def test_missing_capability_and_context_window(http: httpx.Client) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    err = error_of(http.post("/chat/completions", json={**GOOD, "model": "text-only", "tools": tools}), 400)
    assert err["param"] == "tools" and "tools" in err["message"]
    long = {**GOOD, "model": "text-only", "messages": [{"role": "user", "content": "word " * 200}]}
    err = error_of(http.post("/chat/completions", json=long), 400)
    assert err["code"] == "context_length_exceeded"


def test_bad_embeddings_input(http: httpx.Client) -> None:
    err = error_of(http.post("/embeddings", json={"model": "gpt-4o-mini"}), 400)
    assert err["param"] == "input"
    err = error_of(http.post("/embeddings", json={"model": "gpt-4o-mini", "input": [1.5]}), 400)
    assert err["param"] == "input[0]"
    err = error_of(http.post("/embeddings", json={"model": "gpt-4o-mini", "input": "x", "encoding_format": "hex"}),
                   400)
    assert err["param"] == "encoding_format"


def test_bad_timeout_header(http: httpx.Client) -> None:
    err = error_of(http.post("/chat/completions", json=GOOD, headers={"x-switchyard-timeout": "soon"}), 400)
    assert err["param"] == "x-switchyard-timeout"


def test_unknown_path_and_method(http: httpx.Client) -> None:
    error_of(http.get("/nothing-here"), 404)
    # the data-plane paths are dispatched straight from a table; other methods on them still get OpenAI's 405
    for method, path in (("GET", "/chat/completions"), ("PUT", "/embeddings"), ("DELETE", "/chat/completions")):
        err = error_of(http.request(method, path), 405)
        assert err["code"] == "method_not_allowed" and path in err["message"]


def test_every_answer_carries_a_unique_request_id(http: httpx.Client) -> None:
    answers = [http.post("/chat/completions", json=GOOD) for _ in range(20)]
    answers += [http.get("/nothing-here"), http.post("/chat/completions", content=b"{")]
    ids = [r.headers["x-request-id"] for r in answers]
    assert len(set(ids)) == len(ids) and all(i.startswith("req_") and len(i) == 36 for i in ids)
    assert http.post("/chat/completions", json=GOOD, headers={"x-request-id": "mine-1"}).headers[
        "x-request-id"] == "mine-1"


def test_upstream_429_keeps_retry_after(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(429, headers={"retry-after": "7"})
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert info.value.response.headers["retry-after"] == "7"
    assert "'up'" in info.value.message


def test_upstream_5xx_becomes_502_naming_the_provider(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(500)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502
    body: Any = info.value.body
    assert body["provider"] == "up" and body["upstream_status"] == 500 and body["type"] == "upstream_error"


def test_upstream_caller_error_keeps_its_status(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(400, body={"error": {"message": "bad thing", "type": "invalid_request_error",
                                               "param": "messages", "code": None}})
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert "bad thing" in info.value.message and info.value.param == "messages"


def test_upstream_timeout_gives_504(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.hang_next(3)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="slow-model", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 504
    assert info.value.code == "upstream_timeout"


def test_caller_deadline_gives_504(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.hang_next(3)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}],
                                       extra_headers={"x-switchyard-timeout": "0.3"})
    assert info.value.status_code == 504


def test_connection_refused_names_the_provider(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="down-model", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502 and "'down'" in info.value.message


def test_stream_failure_before_first_byte_is_a_plain_error(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(503)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], stream=True)
    assert info.value.status_code == 502


def test_stream_failure_after_first_byte_ends_with_an_error_event(client: openai.OpenAI,
                                                                  fake_openai: FakeOpenAI) -> None:
    fake_openai.break_stream_after(2)
    stream = client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                            messages=[{"role": "user", "content": "one two three four five"}])
    with pytest.raises(openai.APIError) as info:
        for _ in stream:
            pass
    assert "'up'" in info.value.message
