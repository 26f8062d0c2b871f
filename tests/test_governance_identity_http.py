"""Virtual keys on the data plane, over real HTTP with the official openai (and anthropic) SDKs, on SQLite and
PostgreSQL: a key works; revoked and expired keys get 401; a key limited to some models gets 403 for others; the
master key and static keys keep working."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import anthropic
import openai
import pytest

from tests.support.gateway import MASTER_KEY, USER_KEY, RunningGateway, run_gateway
from tests.support.governance import BACKENDS, Admin, gov_config, sdk_http_client, store_url

HI: Any = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module", params=BACKENDS)
def gw(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with store_url(request.param, tmp_path_factory.mktemp("dp")) as url, run_gateway(gov_config(url)) as running:
        yield running


@pytest.fixture(scope="module")
def admin(gw: RunningGateway) -> Iterator[Admin]:
    a = Admin(gw.url)
    yield a
    a.close()


@pytest.fixture(scope="module")
def place(admin: Admin) -> dict[str, Any]:
    org = admin.org()
    team = admin.team(org["id"])
    return {"org": org, "team": team, "user": admin.user(team_id=team["id"])}


def client(gw: RunningGateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key=key, max_retries=0, http_client=sdk_http_client())


def test_a_virtual_key_works_with_the_openai_sdk(gw: RunningGateway, admin: Admin, place: dict[str, Any]) -> None:
    secret = admin.new_key(user_id=place["user"]["id"])["secret"]
    c = client(gw, secret)
    reply = c.chat.completions.create(model="sim-a", messages=HI)
    assert reply.choices[0].message.content
    chunks = list(c.chat.completions.create(model="fast", messages=HI, stream=True))
    assert chunks[-1].choices[0].finish_reason
    assert len(c.embeddings.create(model="sim-c", input=["a", "b"]).data) == 2
    assert {m.id for m in c.models.list()} == {"sim-a", "sim-b", "sim-c", "fast"}


def test_a_team_key_works_with_the_anthropic_sdk(gw: RunningGateway, admin: Admin, place: dict[str, Any]) -> None:
    secret = admin.new_key(team_id=place["team"]["id"], name="service")["secret"]
    with anthropic.Anthropic(base_url=gw.url, api_key=secret, max_retries=0, http_client=sdk_http_client()) as c:
        msg = c.messages.create(model="sim-a", max_tokens=16, messages=HI)
        assert msg.content
    with anthropic.Anthropic(base_url=gw.url, api_key="sk-sy-" + "0" * 43, max_retries=0) as c, \
            pytest.raises(anthropic.AuthenticationError):
        c.messages.create(model="sim-a", max_tokens=16, messages=HI)


def test_a_key_limited_to_some_models_gets_403_for_others(gw: RunningGateway, admin: Admin,
                                                          place: dict[str, Any]) -> None:
    key = admin.new_key(user_id=place["user"]["id"], models=["sim-a", "fast"])
    c = client(gw, key["secret"])
    assert c.chat.completions.create(model="fast", messages=HI).choices
    with pytest.raises(openai.PermissionDeniedError) as e:
        c.chat.completions.create(model="sim-b", messages=HI)
    assert e.value.status_code == 403 and e.value.code == "model_not_allowed"
    with pytest.raises(openai.PermissionDeniedError):
        c.embeddings.create(model="sim-c", input="x")
    assert {m.id for m in c.models.list()} == {"sim-a", "fast"}
    # narrowing the key takes effect on the next call
    admin.patch(f"/admin/keys/{key['id']}", {"models": ["fast"]})
    with pytest.raises(openai.PermissionDeniedError):
        c.chat.completions.create(model="sim-a", messages=HI)


def test_team_models_narrow_every_key_of_the_team(gw: RunningGateway, admin: Admin) -> None:
    org = admin.org()
    team = admin.team(org["id"])
    user = admin.user(team_id=team["id"])
    c = client(gw, admin.new_key(user_id=user["id"])["secret"])
    assert c.chat.completions.create(model="sim-b", messages=HI).choices
    admin.patch(f"/admin/teams/{team['id']}", {"models": ["sim-a"]})
    with pytest.raises(openai.PermissionDeniedError):
        c.chat.completions.create(model="sim-b", messages=HI)
    assert c.chat.completions.create(model="sim-a", messages=HI).choices


def test_a_revoked_key_gets_401_at_once(gw: RunningGateway, admin: Admin, place: dict[str, Any]) -> None:
    key = admin.new_key(user_id=place["user"]["id"])
    c = client(gw, key["secret"])
    assert c.chat.completions.create(model="sim-a", messages=HI).choices
    admin.post(f"/admin/keys/{key['id']}/revoke", expect=200)
    with pytest.raises(openai.AuthenticationError) as e:
        c.chat.completions.create(model="sim-a", messages=HI)
    assert e.value.status_code == 401 and e.value.code == "revoked_api_key"


def test_an_expired_key_gets_401(gw: RunningGateway, admin: Admin, place: dict[str, Any]) -> None:
    # 3 s of life: enough for the first call to land on a slow, loaded CI machine (0.5 s once was not)
    key = admin.new_key(user_id=place["user"]["id"], expires_in=3.0)
    c = client(gw, key["secret"])
    assert c.chat.completions.create(model="sim-a", messages=HI).choices  # cached now, with its expiry
    expires = datetime.fromisoformat(key["expires_at"]).timestamp()
    time.sleep(max(0.0, expires + 0.2 - time.time()))  # just past the key's own expiry, whenever it was made
    with pytest.raises(openai.AuthenticationError) as e:
        c.chat.completions.create(model="sim-a", messages=HI)
    assert e.value.code == "expired_api_key"


def test_unknown_keys_get_401_and_config_keys_still_work(gw: RunningGateway) -> None:
    for bad in ("sk-sy-" + "A" * 43, "sk-something-else-entirely", "sk-sy-"):
        with pytest.raises(openai.AuthenticationError):
            client(gw, bad).chat.completions.create(model="sim-a", messages=HI)
    for good in (MASTER_KEY, USER_KEY):
        assert client(gw, good).chat.completions.create(model="sim-a", messages=HI).choices
