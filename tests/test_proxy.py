"""Outbound proxies: which proxy each upstream goes through (the environment, the provider's ``proxy:``,
``NO_PROXY``), and calls that really go through one (tests/support/proxy.py, a CONNECT and absolute-form forward
proxy on loopback): an OpenAI-compatible upstream over TLS inside the tunnel, verified with the provider's
``ca_file``; the proxy's credentials right and wrong; an http upstream in absolute form; Bedrock over aiohttp; an
https:// proxy (TLS inside TLS)."""

from __future__ import annotations

import base64
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import openai
import pytest

from switchyard.config import BedrockProviderConfig, OpenAIProviderConfig
from switchyard.errors import UpstreamError
from switchyard.messages import WIRE_OPENAI_CHAT, ChatRequest, Message, Role, TextDelta, TextPart
from switchyard.providers import Target
from switchyard.providers.openai import OpenAIProvider
from switchyard.providers.proxy import NoProxy, parse_proxy, proxy_policy
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import USER_KEY, base_config, run_gateway
from tests.support.proxy import ForwardProxy
from tests.support.servers import serve_asgi
from tests.support.tls import TLSFiles, make_tls

PASSWORD = "s3cret/:@x"  # characters that must be percent-encoded in a URL, and decoded for the proxy
TARGET = Target(deployment="gpt", model="gpt-4o-mini")
MSG = [{"role": "user", "content": "through the proxy"}]


# --- which proxy ------------------------------------------------------------------------------------------------


def test_the_environment_names_a_proxy_per_scheme_lower_case_first() -> None:
    env = {"https_proxy": "http://lower:3128", "HTTPS_PROXY": "http://upper:3128", "HTTP_PROXY": "plain.corp:8080"}
    policy = proxy_policy(None, env)
    assert policy is not None
    assert str(policy.select("https", "api.openai.com", 443)) == "http://lower:3128"
    assert str(policy.select("http", "vllm.local", 8000)) == "http://plain.corp:8080"  # no scheme: http
    assert proxy_policy(None, {"HTTP_PROXY": "http://p:1"}).select("https", "a", 443) is None  # type: ignore[union-attr]
    assert proxy_policy(None, {}) is None and proxy_policy(None, {"HTTPS_PROXY": " "}) is None
    assert parse_proxy("https://p").port == 443 and parse_proxy("p").port == 80


def test_no_proxy_matches_names_suffixes_ports_and_networks() -> None:
    rule = NoProxy("localhost, .internal.example ,*.corp,10.0.0.0/8,svc:8443,[::1],192.168.1.5")
    bypassed = [("localhost", 80), ("api.internal.example", 443), ("internal.example", 443), ("a.b.corp", 443),
                ("10.1.2.3", 443), ("svc", 8443), ("::1", 443), ("[::1]", 80), ("192.168.1.5", 8000),
                ("LOCALHOST.", 80), ("corp", 443)]  # a leading "." or "*." is ignored
    proxied = [("api.openai.com", 443), ("notinternal.example", 443), ("11.0.0.1", 443), ("svc", 443),
               ("10.evil.com", 443), ("corporate", 443)]
    assert all(rule.matches(h, p) for h, p in bypassed)
    assert not any(rule.matches(h, p) for h, p in proxied)
    assert NoProxy("*").matches("anything", 1) and not NoProxy("").matches("anything", 1)
    policy = proxy_policy(None, {"HTTPS_PROXY": "http://p:3128", "no_proxy": "localhost"})
    assert policy is not None and policy.select("https", "localhost", 8443) is None


def test_a_configured_proxy_overrides_the_environment_and_none_turns_it_off() -> None:
    env = {"HTTPS_PROXY": "http://env:3128", "NO_PROXY": "*"}
    configured = proxy_policy("http://corp:8080", env)
    assert configured is not None and str(configured.select("https", "api.openai.com", 443)) == "http://corp:8080"
    assert proxy_policy("none", env) is None and proxy_policy("NONE", env) is None
    assert proxy_policy("", env) is not None  # empty is unset: the environment's


def test_proxy_credentials_are_sent_decoded_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    p = parse_proxy(f"http://alice:{quote(PASSWORD, safe='')}@proxy.corp:3128")
    assert p.authorization == "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert PASSWORD not in str(p) and "alice" not in str(p) and "s3cret" not in repr(p)
    assert str(p) == "http://proxy.corp:3128"
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "socks5://alice:hunter2@p:1080")
    with pytest.raises(ValueError) as bad:  # a provider with a proxy it cannot use is not built (serve stops)
        OpenAIProvider("up", OpenAIProviderConfig(type="openai"))
    assert str(bad.value).startswith("providers.up: HTTPS_PROXY (set proxy: none on the provider to ignore it): "
                                     "proxy scheme socks5:// is not supported")
    assert "hunter2" not in str(bad.value)


# --- through a real proxy ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def fake_tls(tls: TLSFiles) -> Iterator[FakeOpenAI]:
    """A fake OpenAI served over TLS as ``localhost``, with a certificate that only ``tls.ca_file`` trusts."""
    fake = FakeOpenAI()
    with serve_asgi(fake.app, ssl_certfile=tls.cert_file, ssl_keyfile=tls.key_file) as url:
        fake.base_url = "https://localhost:" + url.rsplit(":", 1)[1]
        yield fake


@pytest.fixture(scope="module")
def fake_http() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    with fake.serve():
        yield fake


@pytest.fixture(scope="module")
def proxy() -> Iterator[ForwardProxy]:
    p = ForwardProxy()
    with p.serve():
        yield p


@pytest.fixture(scope="module")
def guarded() -> Iterator[ForwardProxy]:
    """A proxy that wants credentials."""
    p = ForwardProxy(credentials=("alice", PASSWORD))
    with p.serve():
        yield p


def _provider(base_url: str, **kw: Any) -> OpenAIProvider:
    return OpenAIProvider("up", OpenAIProviderConfig(type="openai", base_url=base_url, api_key="sk-upstream",
                                                     timeout=10, connect_timeout=5, **kw))


async def _chat_and_stream(p: OpenAIProvider) -> tuple[str, str]:
    whole = await p.chat(ChatRequest(model="gpt", wire=WIRE_OPENAI_CHAT,
                                     messages=[Message(Role.USER, [TextPart("hi")])]), TARGET)
    text = "".join(part.text for part in whole.choices[0].message.parts if isinstance(part, TextPart))
    streamed = ""
    async for chunk in p.stream(ChatRequest(model="gpt", wire=WIRE_OPENAI_CHAT, stream=True,
                                            messages=[Message(Role.USER, [TextPart("hi")])]), TARGET):
        streamed += "".join(e.text for e in chunk.events if isinstance(e, TextDelta))
    return text, streamed


def _gateway(provider: dict[str, Any]) -> dict[str, Any]:
    return base_config(providers={"up": {"type": "openai", "api_key": "sk-upstream", **provider}},
                       deployments=[{"name": "gpt", "provider": "up", "model": "gpt-4o-mini"}])


def test_the_gateway_reaches_a_tls_upstream_through_a_configured_proxy(
        fake_tls: FakeOpenAI, guarded: ForwardProxy, tls: TLSFiles) -> None:
    assert fake_tls.base_url is not None
    tunnels = guarded.tunnels
    config = _gateway({"base_url": fake_tls.base_url + "/v1", "ca_file": tls.ca_file,
                       "proxy": guarded.url_with("alice", quote(PASSWORD, safe=""))})
    with run_gateway(config) as gw:
        client = openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0)
        reply = client.chat.completions.create(model="gpt", messages=MSG)  # type: ignore[arg-type]
        assert reply.choices[0].message.content == "Echo: through the proxy"
        stream = client.chat.completions.create(model="gpt", messages=MSG, stream=True)  # type: ignore[arg-type]
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Echo: through the proxy"
    assert guarded.tunnels > tunnels  # the upstream saw the request inside the tunnel, with our own key:
    assert fake_tls.last_request.headers["authorization"] == "Bearer sk-upstream"
    assert f"CONNECT localhost:{fake_tls.base_url.rsplit(':', 1)[1]}" in guarded.targets
    assert "proxy-authorization" not in fake_tls.last_request.headers


def test_wrong_proxy_credentials_answer_a_502_that_names_the_proxy(
        fake_tls: FakeOpenAI, guarded: ForwardProxy, tls: TLSFiles) -> None:
    assert fake_tls.base_url is not None
    config = _gateway({"base_url": fake_tls.base_url + "/v1", "ca_file": tls.ca_file,
                       "proxy": guarded.url_with("alice", "wrong-password")})
    refused = guarded.refused
    with run_gateway(config) as gw:
        client = openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0)
        for stream in (False, True):
            with pytest.raises(openai.APIStatusError) as e:
                client.chat.completions.create(model="gpt", messages=MSG, stream=stream)  # type: ignore[call-overload]
            assert e.value.status_code == 502
            message = e.value.message
            assert "proxy refused the gateway's credentials (HTTP 407 Proxy Authentication Required)" in message
            assert "wrong-password" not in message and "alice" not in message
    assert guarded.refused == refused + 2


async def test_the_environment_proxy_and_no_proxy(fake_tls: FakeOpenAI, proxy: ForwardProxy, tls: TLSFiles,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert fake_tls.base_url is not None
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    through = _provider(fake_tls.base_url + "/v1", ca_file=tls.ca_file)
    tunnels = proxy.tunnels
    assert await _chat_and_stream(through) == ("Echo: hi", "Echo: hi")
    assert proxy.tunnels == tunnels + 1  # one tunnel, kept alive for both calls
    await through.aclose()
    monkeypatch.setenv("no_proxy", "example.com,localhost")
    direct = _provider(fake_tls.base_url + "/v1", ca_file=tls.ca_file)
    assert await _chat_and_stream(direct) == ("Echo: hi", "Echo: hi")
    assert proxy.tunnels == tunnels + 1
    await direct.aclose()
    off = _provider(fake_tls.base_url + "/v1", ca_file=tls.ca_file, proxy="none")
    monkeypatch.delenv("no_proxy")
    assert (await _chat_and_stream(off))[0] == "Echo: hi" and proxy.tunnels == tunnels + 1
    await off.aclose()


async def test_the_upstream_certificate_is_verified_inside_the_tunnel(fake_tls: FakeOpenAI,
                                                                      proxy: ForwardProxy) -> None:
    assert fake_tls.base_url is not None
    p = _provider(fake_tls.base_url + "/v1", proxy=proxy.url)  # the system's CAs do not know the fake's
    tunnels = proxy.tunnels
    with pytest.raises(UpstreamError) as e:
        await p.chat(ChatRequest(model="gpt", wire=WIRE_OPENAI_CHAT, messages=[Message(Role.USER, [TextPart("x")])]),
                     TARGET)
    assert (e.value.status, e.value.message) == (502, "could not connect to provider 'up'")
    assert e.value.__cause__ is not None and "CERTIFICATE_VERIFY_FAILED" in str(e.value.__cause__)
    assert proxy.tunnels == tunnels + 1  # the tunnel was made; TLS with the upstream refused it
    await p.aclose()


async def test_an_http_upstream_goes_to_the_proxy_in_absolute_form(fake_http: FakeOpenAI,
                                                                   guarded: ForwardProxy) -> None:
    assert fake_http.base_url is not None
    p = _provider(fake_http.base_url + "/v1", proxy=guarded.url_with("alice", quote(PASSWORD, safe="")))
    forwarded = guarded.forwarded
    assert await _chat_and_stream(p) == ("Echo: hi", "Echo: hi")
    assert guarded.forwarded == forwarded + 2  # the proxy closes each forwarded exchange
    assert f"POST {fake_http.base_url}/v1/chat/completions" in guarded.targets
    assert "proxy-authorization" not in fake_http.last_request.headers
    await p.aclose()
    wrong = _provider(fake_http.base_url + "/v1", proxy=guarded.url_with("alice", "nope"))
    with pytest.raises(UpstreamError, match=r"proxy refused the gateway's credentials \(HTTP 407") as e:
        await _chat_and_stream(wrong)
    assert e.value.status == 502 and e.value.retryable
    await wrong.aclose()


async def test_a_proxy_that_cannot_be_reached_is_a_502(fake_tls: FakeOpenAI) -> None:
    assert fake_tls.base_url is not None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, not listening: refused
        p = _provider(fake_tls.base_url + "/v1", proxy=f"http://127.0.0.1:{s.getsockname()[1]}")
        with pytest.raises(UpstreamError) as e:
            await _chat_and_stream(p)
    assert (e.value.status, e.value.message) == (502, "could not reach provider 'up': its proxy could not be reached")
    assert "127.0.0.1" in str(e.value.__cause__)  # the log's side names the proxy
    await p.aclose()


async def test_an_https_proxy_carries_tls_inside_tls(fake_tls: FakeOpenAI, tls: TLSFiles) -> None:
    assert fake_tls.base_url is not None
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tls.cert_file, tls.key_file)
    secure = ForwardProxy(credentials=("alice", PASSWORD), tls=server)
    with secure.serve():
        p = _provider(fake_tls.base_url + "/v1", ca_file=tls.ca_file,
                      proxy=secure.url_with("alice", quote(PASSWORD, safe=""), host="localhost"))
        assert await _chat_and_stream(p) == ("Echo: hi", "Echo: hi")
        assert secure.tunnels == 1
        await p.aclose()


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_bedrock_goes_through_the_proxy_over_aiohttp(scheme: str, guarded: ForwardProxy, tls: TLSFiles,
                                                           monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("botocore")
    from switchyard.providers.bedrock import BedrockProvider
    from tests.support.fake_bedrock import ACCESS_KEY, REGION, SECRET_KEY, FakeBedrock

    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    fake = FakeBedrock()
    served = (serve_asgi(fake.app, ssl_certfile=tls.cert_file, ssl_keyfile=tls.key_file) if scheme == "https"
              else serve_asgi(fake.app))
    with served as url:
        endpoint = url if scheme == "http" else "https://localhost:" + url.rsplit(":", 1)[1]
        model = "anthropic.claude-3-5-sonnet-20240620-v1:0"

        def bedrock(password: str) -> BedrockProvider:
            return BedrockProvider("aws", BedrockProviderConfig(
                type="bedrock", region=REGION, endpoint_url=endpoint, access_key_id=ACCESS_KEY,
                secret_access_key=SECRET_KEY, timeout=10, ca_file=tls.ca_file,
                proxy=guarded.url_with("alice", quote(password, safe=""))))

        req = ChatRequest(model="c", wire=WIRE_OPENAI_CHAT, messages=[Message(Role.USER, [TextPart("hi")])])
        p = bedrock(PASSWORD)
        before = guarded.forwarded + guarded.tunnels
        reply = await p.chat(req, Target("c", model))  # the fake checks the SigV4 signature of the exact URL
        assert reply.choices[0].message.parts and fake.requests
        assert guarded.forwarded + guarded.tunnels == before + 1
        authority = endpoint.split("://", 1)[1]
        assert (f"POST {endpoint}/model/{quote(model, safe='')}/converse" if scheme == "http"
                else f"CONNECT {authority}") in guarded.targets
        await p.aclose()
        wrong = bedrock("nope")
        with pytest.raises(UpstreamError, match=r"HTTP 407") as e:
            await wrong.chat(req, Target("c", model))
        assert e.value.status == 502
        await wrong.aclose()
