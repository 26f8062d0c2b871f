"""Conversations with virtual keys, on SQLite and PostgreSQL: ``retention`` on keys and teams (admin API, store,
Principal), tenant isolation (another org's key gets 404 for everything), the TTL worker, and encryption at rest
read from the raw tables."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest
import sqlalchemy as sa

from switchyard.store.db import create_engine_for
from tests.support.gateway import RunningGateway, run_gateway
from tests.support.governance import BACKENDS, Admin, gov_config, sdk_http_client, store_url

SECRET = "tenant-test-encryption-secret-0123456789"


@dataclass
class Env:
    gw: RunningGateway
    url: str
    admin: Admin


@pytest.fixture(scope="module", params=BACKENDS)
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with store_url(request.param, tmp_path_factory.mktemp("convtenants")) as url:
        cfg = gov_config(url, state={"encryption_key": SECRET, "sweep_interval": 0.1})
        with run_gateway(cfg) as running:
            admin = Admin(running.url)
            yield Env(running, url, admin)
            admin.close()


def oai(env: Env, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=env.gw.openai_base, api_key=key, max_retries=0, http_client=sdk_http_client())


def tenant(env: Env, **team: Any) -> tuple[dict[str, Any], str]:
    """An org with a team (``team`` fields) and a key of that team; (team, secret)."""
    org = env.admin.org()
    t = env.admin.team(org["id"], **team)
    return t, str(env.admin.new_key(team_id=t["id"])["secret"])


def test_retention_on_teams_and_keys(env: Env) -> None:
    team, key = tenant(env, retention={"conversations": "7d"})
    assert team["retention"] == {"conversations": "7d"}
    with oai(env, key) as c:
        conv = c.conversations.create()
    # the key's own retention wins over its team's, per kind
    own = env.admin.new_key(team_id=team["id"], retention={"conversations": "1h"})
    assert own["retention"] == {"conversations": "1h"}
    with oai(env, own["secret"]) as c:
        short = c.conversations.create()
    assert short.created_at > 0 and conv.id != short.id
    store = env.gw.gateway.conversations
    import asyncio

    got = asyncio.run(store.get(f"org:{team['org_id']}", short.id))
    assert got.expires_at - time.time() < 3700  # 1h, not 7d
    # a team without retention: refused; giving it retention (admin API) lets its keys keep conversations
    bare, bare_key = tenant(env)
    with oai(env, bare_key) as c, pytest.raises(openai.PermissionDeniedError):
        c.conversations.create()
    env.admin.patch(f"/admin/teams/{bare['id']}", {"retention": {"conversations": "30d"}})
    with oai(env, bare_key) as c:
        assert c.conversations.create().object == "conversation"
    bad = env.admin.request("PATCH", f"/admin/teams/{bare['id']}", {"retention": {"prompts": "30d"}})
    assert bad.status_code == 400 and "retention" in bad.text


def test_another_org_gets_404(env: Env) -> None:
    _, key_a = tenant(env, retention={"conversations": "30d"})
    _, key_b = tenant(env, retention={"conversations": "30d"})
    with oai(env, key_a) as a:
        conv = a.conversations.create(items=[{"type": "message", "role": "user", "content": "org A private"}])
        a.chat.completions.create(model="sim-a", extra_headers={"x-switchyard-conversation": conv.id},
                                  messages=[{"role": "user", "content": "hello"}])
        a.responses.create(model="sim-a", conversation=conv.id, input="and the Responses API")
        item_id = next(iter(a.conversations.items.list(conv.id))).id
    with oai(env, key_b) as b:
        for call in (lambda: b.conversations.retrieve(conv.id),
                     lambda: list(b.conversations.items.list(conv.id)),
                     lambda: b.conversations.items.retrieve(item_id, conversation_id=conv.id),
                     lambda: b.conversations.items.create(conv.id, items=[{"role": "user", "content": "x"}]),
                     lambda: b.conversations.items.delete(item_id, conversation_id=conv.id),
                     lambda: b.conversations.update(conv.id, metadata={"a": "b"}),
                     lambda: b.conversations.delete(conv.id),
                     lambda: b.chat.completions.create(model="sim-a", messages=[{"role": "user", "content": "x"}],
                                                       extra_headers={"x-switchyard-conversation": conv.id}),
                     lambda: b.responses.create(model="sim-a", conversation=conv.id, input="x")):
            with pytest.raises(openai.NotFoundError):
                call()
    r = httpx.get(f"{env.gw.openai_base}/conversations/{conv.id}/state",
                  headers={"authorization": f"Bearer {key_b}"})
    assert r.status_code == 404
    with anthropic.Anthropic(base_url=env.gw.url, api_key=key_b, max_retries=0) as b2, \
            pytest.raises(anthropic.NotFoundError):
        b2.messages.create(model="sim-a", max_tokens=20, extra_headers={"x-switchyard-conversation": conv.id},
                           messages=[{"role": "user", "content": "x"}])
    with oai(env, key_a) as a:  # untouched for its owner
        assert len(list(a.conversations.items.list(conv.id))) == 5


def test_the_ttl_worker_deletes_expired_conversations(env: Env) -> None:
    _, key = tenant(env, retention={"conversations": "1s"})
    with oai(env, key) as c:
        conv = c.conversations.create(items=[{"role": "user", "content": "short-lived"}])
    engine = create_engine_for(env.url)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT count(*) FROM conversation_items WHERE conversation_id = :i"),
                                    {"i": conv.id}).scalar()
                convs = conn.execute(sa.text("SELECT count(*) FROM conversations WHERE id = :i"),
                                     {"i": conv.id}).scalar()
            if not rows and not convs:
                break
            time.sleep(0.1)
        assert (rows, convs) == (0, 0)
    finally:
        engine.dispose()


def test_content_is_encrypted_in_the_store(env: Env) -> None:
    _, key = tenant(env, retention={"conversations": "30d"})
    with oai(env, key) as c:
        conv = c.conversations.create(metadata={"m": "META-PLAINTEXT"})
        c.chat.completions.create(model="sim-a", extra_headers={"x-switchyard-conversation": conv.id},
                                  messages=[{"role": "user", "content": "ZEBRA-CROSSING-PLAINTEXT"}])
    engine = create_engine_for(env.url)
    try:
        with engine.connect() as conn:
            blobs = [bytes(v) for t in ("conversations", "conversation_items")
                     for row in conn.execute(sa.text(f"SELECT * FROM {t}")) for v in row
                     if isinstance(v, bytes | memoryview)]
    finally:
        engine.dispose()
    assert blobs and all(b[:1] == b"\x01" for b in blobs)
    joined = b"".join(blobs)
    assert b"ZEBRA" not in joined and b"META-PLAINTEXT" not in joined


def test_concurrent_appends_never_interleave_a_turn(env: Env) -> None:
    """Twenty turns appended at once to one conversation: each turn's messages are stored together, in order,
    with contiguous sequence numbers (one transaction, or one statement, per turn)."""
    import asyncio

    from switchyard.messages import Message, Role, TextPart

    store = env.gw.gateway.conversations
    scope = "org:concurrency-test"

    async def run() -> list[Any]:
        conv = await store.create(scope, ttl=3600)
        turns = [[Message(Role.USER, [TextPart(f"q{i}")]), Message(Role.ASSISTANT, [TextPart(f"a{i}")])]
                 for i in range(20)]
        await asyncio.gather(*(store.append(scope, conv.id, t, [None, "openai"], ttl=3600) for t in turns))
        return (await store.load(scope, conv.id)).messages

    messages = asyncio.run(run())
    texts = [m.text() for m in messages]
    assert len(texts) == 40
    for k in range(0, 40, 2):
        assert texts[k][0] == "q" and texts[k + 1] == "a" + texts[k][1:]
    assert sorted(texts[0::2], key=lambda t: int(t[1:])) == [f"q{i}" for i in range(20)]
