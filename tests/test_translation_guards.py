"""What cannot be translated is refused by name, never dropped or sent as something else."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import pytest

from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import MASTER_KEY, RunningGateway, base_config, run_gateway


@pytest.fixture(scope="module")
def gw(fake_openai_server: FakeOpenAI) -> Iterator[RunningGateway]:
    cfg = base_config(
        providers={"up": {"type": "openai", "base_url": f"{fake_openai_server.base_url}/v1", "api_key": "k"}},
        deployments=[{"name": "gpt-4o-mini", "provider": "up"}],
    )
    with run_gateway(cfg) as running:
        yield running


@pytest.fixture
def client(gw: RunningGateway, fake_openai: FakeOpenAI) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0) as c:
        yield c


def test_anthropic_server_tool_is_refused_for_an_openai_upstream(client: anthropic.Anthropic,
                                                                  fake_openai: FakeOpenAI) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(
            model="gpt-4o-mini", max_tokens=50, messages=[{"role": "user", "content": "search"}],
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
        )
    assert "web_search" in info.value.message and "'up'" in info.value.message
    assert fake_openai.requests == []


def test_thinking_budget_becomes_reasoning_effort(client: anthropic.Anthropic, fake_openai: FakeOpenAI) -> None:
    client.messages.create(model="gpt-4o-mini", max_tokens=9000, messages=[{"role": "user", "content": "think"}],
                           thinking={"type": "enabled", "budget_tokens": 8000})
    assert fake_openai.last_request.json["reasoning_effort"] == "medium"


def test_errors_on_anthropic_paths_are_anthropic_shaped(gw: RunningGateway) -> None:
    resp = httpx.get(gw.url + "/v1/messages", headers={"x-api-key": MASTER_KEY})
    assert resp.status_code == 405
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    resp = httpx.get(gw.url + "/v1/messages/nothing", headers={"x-api-key": MASTER_KEY})
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "not_found_error"
