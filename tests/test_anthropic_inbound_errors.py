"""Anthropic error objects from the gateway's Messages endpoints, as the official anthropic SDK raises them.

Every bad input must raise the SDK's exception for its status, with an Anthropic ``error.type`` and a message
that names the offending field; upstream failures keep their status (and ``Retry-After``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import anthropic
import httpx
import pytest

from switchyard.errors import (
    AuthenticationFailed,
    InvalidRequest,
    ModelNotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServiceUnavailable,
    SwitchyardError,
    UpstreamError,
    UpstreamTimeout,
)
from switchyard.protocols.anthropic_errors import error_object, error_type, render_stream_error
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import MASTER_KEY, RunningGateway, base_config, run_gateway

LIMITED_KEY = "sk-test-limited-0123"
OK_MESSAGES: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def gw(fake_openai_server: FakeOpenAI) -> Iterator[RunningGateway]:
    assert fake_openai_server.base_url is not None
    cfg = base_config(
        server={"max_body_bytes": 8192},
        providers={"sim": {"type": "simulated", "output_tokens": 3},
                   "up": {"type": "openai", "base_url": fake_openai_server.base_url + "/v1", "api_key": "k"}},
        deployments=[{"name": "claude-sim", "provider": "sim"}, {"name": "gpt-4o-mini", "provider": "up"}],
        keys=[{"key": LIMITED_KEY, "name": "limited", "models": ["claude-sim"]}],
    )
    with run_gateway(cfg) as running:
        yield running


@pytest.fixture
def client(gw: RunningGateway, fake_openai: FakeOpenAI) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0) as c:
        yield c


def post(client: anthropic.Anthropic, body: dict[str, Any] | None = None, content: bytes | None = None,
         path: str = "/v1/messages") -> object:
    if content is not None:
        return client.post(path, cast_to=object, content=content,
                           options={"headers": {"content-type": "application/json"}})
    return client.post(path, cast_to=object, body=body)


def error_of(info: pytest.ExceptionInfo[anthropic.APIStatusError], status: int, type_: str) -> str:
    """The Anthropic error's message, after checking its status, type, shape and request id."""
    exc = info.value
    assert exc.status_code == status and exc.type == type_
    assert isinstance(exc.body, dict) and exc.body["type"] == "error" and set(exc.body["error"]) == {"type",
                                                                                                  "message"}
    assert exc.request_id is not None and exc.request_id == exc.response.headers["x-request-id"]
    assert exc.body["request_id"] == exc.request_id
    assert "Traceback" not in exc.body["error"]["message"]
    return str(exc.body["error"]["message"])


BASE: dict[str, Any] = {"model": "claude-sim", "max_tokens": 10, "messages": OK_MESSAGES}

BAD_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"model": "claude-sim", "messages": OK_MESSAGES}, "max_tokens"),
    ({"model": "claude-sim", "max_tokens": 10}, "messages"),
    ({"max_tokens": 10, "messages": OK_MESSAGES}, "model"),
    ({**BASE, "messages": []}, "messages"),
    ({**BASE, "messages": "hi"}, "messages"),
    ({**BASE, "max_tokens": "ten"}, "max_tokens"),
    ({**BASE, "max_tokens": 0}, "max_tokens"),
    ({**BASE, "model": 7}, "model"),
    ({**BASE, "messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    ({**BASE, "messages": [{"role": "system", "content": [{"type": "image"}]}]}, "messages[0].content[0].type"),
    ({**BASE, "messages": [{"role": "system", "content": 5}]}, "messages[0].content"),
    ({**BASE, "messages": [{"role": "user"}]}, "messages[0].content"),
    ({**BASE, "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({**BASE, "messages": ["hi"]}, "messages[0]"),
    ({**BASE, "messages": [{"role": "user", "content": [{"text": "no type"}]}]}, "messages[0].content[0].type"),
    ({**BASE, "messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0].text"),
    ({**BASE, "messages": [{"role": "user", "content": [{"type": "image"}]}]}, "messages[0].content[0].source"),
    ({**BASE, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64"}}]}]},
     "messages[0].content[0].source.data"),
    ({**BASE, "messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f",
                                                         "input": {}}]}]}, "messages[0].content[0].type"),
    ({**BASE, "messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f",
                                                              "input": "x"}]}]}, "messages[0].content[0].input"),
    ({**BASE, "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
     "messages[0].content[0].tool_use_id"),
    ({**BASE, "system": 5}, "system"),
    ({**BASE, "system": [{"type": "image"}]}, "system[0].type"),
    ({**BASE, "temperature": 5}, "temperature"),
    ({**BASE, "temperature": "hot"}, "temperature"),
    ({**BASE, "top_k": -1}, "top_k"),
    ({**BASE, "stream": "yes"}, "stream"),
    ({**BASE, "stop_sequences": "STOP"}, "stop_sequences"),
    ({**BASE, "stop_sequences": [1]}, "stop_sequences[0]"),
    ({**BASE, "metadata": {"user_id": 5}}, "metadata.user_id"),
    ({**BASE, "tools": {"name": "f"}}, "tools"),
    ({**BASE, "tools": [{"name": "f"}]}, "tools[0].input_schema"),
    ({**BASE, "tools": [{"input_schema": {"type": "object"}}]}, "tools[0].name"),
    ({**BASE, "tool_choice": "auto"}, "tool_choice"),
    ({**BASE, "tool_choice": {"type": "tool"}}, "tool_choice.name"),
    ({**BASE, "tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
    ({**BASE, "thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
    ({**BASE, "thinking": {"type": "enabled", "budget_tokens": "lots"}}, "thinking.budget_tokens"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES, ids=[f for _, f in BAD_BODIES])
def test_bad_bodies_name_the_field(client: anthropic.Anthropic, body: dict[str, Any], field: str) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        post(client, body)
    assert f"'{field}'" in error_of(info, 400, "invalid_request_error")


def test_missing_max_tokens_through_the_sdk(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model="claude-sim", max_tokens=cast(Any, None), messages=OK_MESSAGES, timeout=10)
    assert "max_tokens" in error_of(info, 400, "invalid_request_error")
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model="claude-sim", max_tokens=10, messages=cast(Any, [{"role": "user", "content": 5}]))
    assert "messages[0].content" in error_of(info, 400, "invalid_request_error")


@pytest.mark.parametrize(("content", "words"), [(b"", "empty"), (b"{not json", "not valid JSON"),
                                                (b"[1, 2]", "JSON object")])
def test_malformed_bodies(client: anthropic.Anthropic, content: bytes, words: str) -> None:
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        with pytest.raises(anthropic.BadRequestError) as info:
            post(client, content=content, path=path)
        assert words in error_of(info, 400, "invalid_request_error")


def test_oversized_body_is_a_400(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        post(client, {**BASE, "messages": [{"role": "user", "content": "x" * 10_000}]})
    assert "limit" in error_of(info, 400, "invalid_request_error")


def test_bad_and_missing_keys(gw: RunningGateway) -> None:
    with anthropic.Anthropic(base_url=gw.url, api_key="sk-wrong", max_retries=0) as bad:
        with pytest.raises(anthropic.AuthenticationError) as info:
            bad.messages.create(model="claude-sim", max_tokens=10, messages=OK_MESSAGES)
        error_of(info, 401, "authentication_error")
        with pytest.raises(anthropic.AuthenticationError) as info:
            bad.messages.count_tokens(model="claude-sim", messages=OK_MESSAGES)
        error_of(info, 401, "authentication_error")
    resp = httpx.post(gw.url + "/v1/messages", json=BASE)  # no key at all
    assert resp.status_code == 401 and resp.json()["error"]["type"] == "authentication_error"
    assert "x-api-key" in resp.json()["error"]["message"]
    with anthropic.Anthropic(base_url=gw.url, auth_token=MASTER_KEY, max_retries=0) as bearer:
        assert bearer.messages.create(model="claude-sim", max_tokens=10, messages=OK_MESSAGES).type == "message"


def test_unknown_and_forbidden_models(client: anthropic.Anthropic, gw: RunningGateway) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="claude-nope", max_tokens=10, messages=OK_MESSAGES)
    assert "claude-nope" in error_of(info, 404, "not_found_error")
    with pytest.raises(anthropic.NotFoundError) as info, client.messages.stream(
            model="claude-nope", max_tokens=10, messages=OK_MESSAGES) as stream:
        stream.get_final_message()
    error_of(info, 404, "not_found_error")
    with anthropic.Anthropic(base_url=gw.url, api_key=LIMITED_KEY, max_retries=0) as limited:
        with pytest.raises(anthropic.PermissionDeniedError) as pinfo:
            limited.messages.create(model="gpt-4o-mini", max_tokens=10, messages=OK_MESSAGES)
        assert "gpt-4o-mini" in error_of(pinfo, 403, "permission_error")
        assert limited.messages.count_tokens(model="claude-sim", messages=OK_MESSAGES).input_tokens > 0


def test_count_tokens_validates(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        post(client, {"model": "claude-sim"}, path="/v1/messages/count_tokens")
    assert "'messages'" in error_of(info, 400, "invalid_request_error")


def test_upstream_errors_keep_status_and_retry_after(client: anthropic.Anthropic, fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(429, headers={"retry-after": "7"})
    with pytest.raises(anthropic.RateLimitError) as rinfo:
        client.messages.create(model="gpt-4o-mini", max_tokens=10, messages=OK_MESSAGES)
    error_of(rinfo, 429, "rate_limit_error")
    assert rinfo.value.response.headers["retry-after"] == "7"
    fake_openai.fail_next(503)
    with pytest.raises(anthropic.InternalServerError) as info:
        client.messages.create(model="gpt-4o-mini", max_tokens=10, messages=OK_MESSAGES)
    error_of(info, 502, "overloaded_error")
    fake_openai.fail_next(400)
    with pytest.raises(anthropic.BadRequestError) as binfo:
        client.messages.create(model="gpt-4o-mini", max_tokens=10, messages=OK_MESSAGES)
    error_of(binfo, 400, "invalid_request_error")
    fake_openai.fail_next(500)
    with pytest.raises(anthropic.InternalServerError) as info, client.messages.stream(
            model="gpt-4o-mini", max_tokens=10, messages=OK_MESSAGES) as stream:
        stream.get_final_message()
    error_of(info, 502, "api_error")


def test_deadline_is_a_504_timeout_error(client: anthropic.Anthropic, fake_openai: FakeOpenAI) -> None:
    fake_openai.hang_next(2)
    with pytest.raises(anthropic.GatewayTimeoutError) as info:
        client.messages.create(model="gpt-4o-mini", max_tokens=10, messages=OK_MESSAGES,
                               extra_headers={"x-switchyard-timeout": "0.2"})
    error_of(info, 504, "timeout_error")


@pytest.mark.parametrize(("exc", "status", "type_"), [
    (InvalidRequest("x"), 400, "invalid_request_error"),
    (PayloadTooLarge("x"), 400, "invalid_request_error"),
    (AuthenticationFailed("x"), 401, "authentication_error"),
    (PermissionDenied("x"), 403, "permission_error"),
    (ModelNotFound("x"), 404, "not_found_error"),
    (RateLimited("x", retry_after=2), 429, "rate_limit_error"),
    (ServiceUnavailable("x"), 503, "overloaded_error"),
    (UpstreamError("x", provider="p", upstream_status=529), 502, "overloaded_error"),
    (UpstreamError("x", provider="p", upstream_status=500), 502, "api_error"),
    (UpstreamError("x", provider="p", upstream_status=404), 404, "not_found_error"),
    (UpstreamError("x", provider="p", upstream_status=413), 413, "request_too_large"),
    (UpstreamError("x", provider="p"), 502, "api_error"),
    (UpstreamTimeout("x", provider="p"), 504, "timeout_error"),
])
def test_error_type_mapping(exc: SwitchyardError, status: int, type_: str) -> None:
    assert (exc.status, error_type(exc)) == (status, type_)
    assert error_object(exc, "req_1") == {"type": "error", "error": {"type": type_, "message": "x"},
                                          "request_id": "req_1"}
    assert render_stream_error(exc).startswith(b"event: error\ndata: {\"type\":\"error\"")
