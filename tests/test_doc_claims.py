"""Claims of the docs that once differed from the behaviour: each is checked here as the docs state it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest
from click.testing import CliRunner

from switchyard.cli.main import main
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import USER_KEY, RunningGateway, base_config, run_gateway


@pytest.fixture
def gw() -> Iterator[tuple[RunningGateway, FakeOpenAI]]:
    fake = FakeOpenAI()
    with fake.serve() as url:
        cfg = base_config(
            providers={"sim": {"type": "simulated"}, "up": {"type": "openai", "api_key": "k", "base_url": url + "/v1"}},
            deployments=[{"name": "emb", "provider": "sim", "capabilities": ["embeddings"]},
                         {"name": "chatty", "provider": "up", "model": "gpt-4o-mini"}])
        with run_gateway(cfg) as running:
            yield running, fake


def test_chat_to_an_embeddings_only_deployment_is_refused(gw: tuple[RunningGateway, FakeOpenAI]) -> None:
    """docs/routing.md (Planning): a deployment that lacks a capability the request needs (chat, for a chat call)
    is skipped; nothing fits: a 400, here ``unsupported_model`` (the deployment does not serve chat)."""
    running, _ = gw
    with openai.OpenAI(base_url=running.openai_base, api_key=USER_KEY, max_retries=0) as c:
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(model="emb", messages=[{"role": "user", "content": "hi"}])
        assert e.value.code == "unsupported_model" and "does not serve chat" in e.value.message
        assert len(c.embeddings.create(model="emb", input=["a"]).data) == 1  # what it does serve still works
        with pytest.raises(openai.BadRequestError):
            c.embeddings.create(model="chatty", input=["a"])
    with anthropic.Anthropic(base_url=running.url, api_key=USER_KEY, max_retries=0) as ac:
        with pytest.raises(anthropic.BadRequestError) as ae:
            ac.messages.create(model="emb", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        assert ae.value.type == "invalid_request_error" and "does not serve chat" in ae.value.message


def test_an_upstream_429_has_code_rate_limit_exceeded(gw: tuple[RunningGateway, FakeOpenAI]) -> None:
    """docs/api.md (errors): 429, the upstream throttled the call (its Retry-After is kept): rate_limit_exceeded."""
    running, fake = gw
    fake.fail_next(429, headers={"retry-after": "7"})
    with (openai.OpenAI(base_url=running.openai_base, api_key=USER_KEY, max_retries=0) as c,
          pytest.raises(openai.RateLimitError) as e):
        c.chat.completions.create(model="chatty", messages=[{"role": "user", "content": "hi"}])
    assert e.value.code == "rate_limit_exceeded" and e.value.response.headers["retry-after"] == "7"
    assert isinstance(e.value.body, dict) and e.value.body.get("provider") == "up"


def check(tmp_path: Path, text: str) -> tuple[int, str]:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    r = CliRunner().invoke(main, ["check", str(path)], terminal_width=200)
    return r.exit_code, r.stdout + r.stderr


BEDROCK = """
providers:
  aws: {type: bedrock, region: us-east-1, access_key_id: A, secret_access_key: B}
deployments:
  - {name: claude, provider: aws, model: anthropic.claude-3-haiku}
"""


def test_check_reports_a_missing_extra_as_serve_would(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = check(tmp_path, BEDROCK)
    assert code == 0, out  # botocore is installed here
    monkeypatch.setitem(sys.modules, "botocore.auth", None)  # as if it were not: importing it fails
    code, out = check(tmp_path, BEDROCK)
    assert code == 2 and "serve would refuse it" in out and "pip install 'switchyard[bedrock]'" in out


def test_check_leaves_out_the_deployments_of_disabled_providers(tmp_path: Path) -> None:
    code, out = check(tmp_path, """
providers:
  sim: {type: simulated}
  spare: {type: openai, api_key: k, enabled: false}
deployments:
  - {name: a, provider: sim}
  - {name: b, provider: spare}
  - {name: c, provider: spare}
routes:
  r1: {targets: [a, b]}
  r2: {targets: [c]}
""")
    assert code == 0, out
    assert "(1 providers, 1 deployments, 1 routes; 2 deployments of disabled providers left out)" in out
