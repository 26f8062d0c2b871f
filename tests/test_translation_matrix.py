"""The translation matrix: {OpenAI client, Anthropic client} x {openai, anthropic, gemini, bedrock, llamacpp} x
{plain, streaming, tools, streaming tools, image input, system prompt, multi-turn with tool results, length}.

One gateway over real HTTP, a deployment per provider (``m-openai`` ... ``m-llamacpp``), each in front of a fake
upstream that speaks its provider's documented wire format (or, for ``llamacpp``, the real local model). Every cell
drives the gateway with an official SDK and checks, from the client's side, what the upstream really said: each fake's
responses are tapped as they go out (``tests.support.matrix.Tap``) and read in that provider's own format, so text,
stop reasons, tool-call ids and usage (cached and reasoning tokens included) are compared exactly, not just for
presence. The fakes are told to report cache reads/writes and thinking tokens so that those mappings are exercised.
Request-side checks read what the upstream received: the system prompt in its system slot, the image in its format,
the tool result linked to the call it answers.

Then: same-protocol pairs pass through losslessly (unknown fields both ways), what cannot be translated is a 400
naming the parameter and the provider, and a Gemini 3 function call's thought signature survives the round trip in the
tool-call id. A cell that fails because of a gateway bug is ``xfail(strict=True)`` with the bug in its reason (matrix
cells through ``KNOWN_BUGS``, refusal cells through ``refusals``), so that a fix shows up as an XPASS failure.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_bedrock import ACCESS_KEY, REGION, SECRET_KEY, FakeBedrock
from tests.support.fake_gemini import FakeGemini, make_fake_gemini
from tests.support.fake_openai import FakeOpenAI, make_fake_openai
from tests.support.gateway import USER_KEY, RunningGateway, base_config, run_gateway
from tests.support.matrix import (
    ANTHROPIC_STOP,
    OPENAI_FINISH,
    Finish,
    Provider,
    Reply,
    Tap,
    conversation_text,
    image_in,
    png,
    sse_events,
    system_text,
    tool_exchange,
    upstream_reply,
)

try:
    import llama_cpp  # noqa: F401

    HAVE_LOCAL = True
except ImportError:
    HAVE_LOCAL = False
NEEDS_LOCAL = pytest.mark.skipif(not HAVE_LOCAL, reason="the switchyard[local] extra is not installed")

PROVIDERS: tuple[Provider, ...] = ("openai", "anthropic", "gemini", "bedrock", "llamacpp")
SCENARIOS = ("plain", "streaming", "tools", "streaming_tools", "image", "system", "multi_turn", "length")
UPSTREAM_MODEL: dict[Provider, str] = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-sonnet-4-5",
    "gemini": "gemini-2.5-flash",
    "bedrock": "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "llamacpp": "smollm2",
}
GEMINI3 = "gemini-3-flash-preview"  # signs its function calls, and refuses a call turn sent back unsigned
ANTHROPIC_KEY = "sk-ant-upstream-matrix"
GEMINI_KEY = "gemini-test-key"

# Prompts the local model (greedy) answers within MAX_TOKENS, so "stop" is a fair expectation for it too.
QUESTION = "What is 2+2?"
SYSTEM = "Answer in one word."
SYSTEM_QUESTION = "What is the capital of France?"
WEATHER_Q = "What's the weather in Paris?"
TOOL_RESULT = "Sunny, 21 C"
IMAGE_Q = "What is in this image?"
PNG = png()
MAX_TOKENS = 16  # small for the local model; the fakes' replies are a handful of words
SHORT = 2  # the length scenario
CITY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
                               "required": ["city"]}  # an enum keeps the local model's grammar-bound call short
CALL_ARGS = {"city": "Paris"}  # every fake samples the first enum value; greedy decoding picks it too
OAI_TOOL: Any = {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
                                                  "parameters": CITY_SCHEMA}}
OAI_FORCE: Any = {"type": "function", "function": {"name": "get_weather"}}
ANT_TOOL: Any = {"name": "get_weather", "description": "Current weather in a city", "input_schema": CITY_SCHEMA}
ANT_FORCE: Any = {"type": "tool", "name": "get_weather"}
# The follow-up turn after a tool result: `auto` where the upstream answers a tool result in text by itself.
# fake_openai calls the tools again under `auto`, and the 135M local model cannot be trusted to choose, so those two
# get `none`; Converse has no `none` once tools were used (the gateway rightly refuses it), so bedrock gets `auto`.
FOLLOW_UP: dict[Provider, str] = {"openai": "none", "anthropic": "auto", "gemini": "auto", "bedrock": "auto",
                                  "llamacpp": "none"}

# Usage the fakes are told to report, so that cache and reasoning token mappings are exercised in every cell.
ANTHROPIC_CACHE = {"cache_read_input_tokens": 5, "cache_creation_input_tokens": 3}
GEMINI_CACHED, GEMINI_THOUGHTS = 4, 6
BEDROCK_CACHE_READ, BEDROCK_CACHE_WRITE = 5, 3

# (client, provider, scenario) -> why the cell fails today: a bug in src/, described in the reason. None at present.
KNOWN_BUGS: dict[tuple[str, Provider, str], str] = {}

# --- the upstreams and the gateway ---------------------------------------------------------------------------


@dataclass
class Upstreams:
    """The four fakes (each behind a Tap) and what the local model was given."""

    openai: FakeOpenAI
    anthropic: FakeAnthropic
    gemini: FakeGemini
    bedrock: FakeBedrock
    taps: dict[Provider, Tap]
    local_prompts: list[list[dict[str, Any]]] = field(default_factory=list)

    def fresh(self) -> None:
        for fake in (self.openai, self.anthropic, self.gemini, self.bedrock):
            fake.reset()
        for tap in self.taps.values():
            tap.clear()
        self.local_prompts.clear()
        self.anthropic.api_key = ANTHROPIC_KEY
        self.anthropic.extra_usage.update(ANTHROPIC_CACHE)
        self.gemini.cached_tokens, self.gemini.thoughts_tokens = GEMINI_CACHED, GEMINI_THOUGHTS
        self.bedrock.cache_read_tokens, self.bedrock.cache_write_tokens = BEDROCK_CACHE_READ, BEDROCK_CACHE_WRITE

    def count(self, p: Provider) -> int:
        if p == "llamacpp":
            return len(self.local_prompts)
        return len(getattr(self, p).requests)

    def request(self, p: Provider) -> dict[str, Any]:
        """The body of the last request the upstream received (for llamacpp: the messages the model was given)."""
        if p == "llamacpp":
            assert self.local_prompts, "the local model was not called"
            return {"messages": self.local_prompts[-1]}
        fake: Any = getattr(self, p)
        assert fake.requests, f"{p} received no request"
        body = fake.requests[-1].json
        assert isinstance(body, dict)
        return body

    def streamed(self, p: Provider) -> bool:
        """Whether the last request asked the upstream for its streaming form."""
        if p == "gemini":
            last = self.gemini.requests[-1]
            return last.path.endswith(":streamGenerateContent") and last.params.get("alt") == "sse"
        if p == "bedrock":
            return self.bedrock.requests[-1].operation == "converse-stream"
        return bool(self.request(p).get("stream"))

    def reply(self, p: Provider) -> Reply | None:
        """What the upstream last answered, read in its own wire format (None for the local model)."""
        return None if p == "llamacpp" else upstream_reply(p, self.taps[p].last)


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    fakes = Upstreams(openai=make_fake_openai(), anthropic=FakeAnthropic(api_key=ANTHROPIC_KEY),
                      gemini=make_fake_gemini(api_key=GEMINI_KEY), bedrock=FakeBedrock(), taps={})
    with contextlib.ExitStack() as stack, pytest.MonkeyPatch.context() as mp:
        for var in [v for v in os.environ if v.startswith("AWS_")]:  # nothing of the machine's AWS set-up leaks in
            mp.delenv(var)
        mp.setenv("AWS_CONFIG_FILE", os.devnull)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        for p in ("openai", "anthropic", "gemini", "bedrock"):
            fake: Any = getattr(fakes, p)
            fakes.taps[p] = fake.app = Tap(fake.app)  # before serve(), which serves self.app
            stack.enter_context(fake.serve())
        yield fakes


def gateway_config(up: Upstreams) -> dict[str, Any]:
    providers: dict[str, Any] = {
        "openai": {"type": "openai", "base_url": f"{up.openai.base_url}/v1", "api_key": "sk-upstream-matrix"},
        "anthropic": {"type": "anthropic", "base_url": up.anthropic.base_url, "api_key": ANTHROPIC_KEY},
        "gemini": {"type": "gemini", "base_url": up.gemini.base_url, "api_key": GEMINI_KEY},
        "bedrock": {"type": "bedrock", "region": REGION, "endpoint_url": up.bedrock.base_url,
                    "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY, "timeout": 20.0},
    }
    if HAVE_LOCAL:
        providers["llamacpp"] = {"type": "llamacpp"}
    # every deployment claims vision, so that an image reaches the provider (the local one refuses it by name)
    caps = ["chat", "tools", "json", "vision"]
    deployments = [{"name": f"m-{p}", "provider": p, "model": UPSTREAM_MODEL[p], "capabilities": caps}
                   for p in PROVIDERS if p in providers]
    deployments.append({"name": "m-gemini3", "provider": "gemini", "model": GEMINI3, "capabilities": caps})
    return base_config(providers=providers, deployments=deployments)


@pytest.fixture(scope="module")
def gw(upstreams: Upstreams) -> Iterator[RunningGateway]:
    with run_gateway(gateway_config(upstreams)) as running:
        if HAVE_LOCAL:  # record what the local model is given (its prompt is the llamacpp "upstream request")
            provider: Any = running.gateway.catalog.providers["llamacpp"]
            llm: Any = provider._llm  # loaded by the provider's start()
            assert llm is not None
            generate = llm.create_chat_completion

            def recording(**kwargs: Any) -> Any:
                upstreams.local_prompts.append(kwargs["messages"])
                return generate(**kwargs)

            llm.create_chat_completion = recording
        yield running


@pytest.fixture(scope="module")
def oai(gw: RunningGateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def ant(gw: RunningGateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gw.url, api_key=USER_KEY, max_retries=0, timeout=30) as c:
        yield c


@pytest.fixture(autouse=True)
def up(upstreams: Upstreams) -> Iterator[Upstreams]:
    upstreams.fresh()
    yield upstreams
    assert upstreams.anthropic.violations == [], "fake_anthropic sent frames the anthropic SDK types reject"


@dataclass
class Cell:
    oai: openai.OpenAI
    ant: anthropic.Anthropic
    up: Upstreams
    p: Provider

    @property
    def model(self) -> str:
        return f"m-{self.p}"


# --- checks shared by the cells ----------------------------------------------------------------------------------


def expect_call_ids(client_ids: list[str], up: Reply) -> None:
    """Tool-call ids are the upstream's own; where it gives none (Gemini), the gateway's are non-empty and unique."""
    assert len(client_ids) == len(up.calls)
    for cid, call in zip(client_ids, up.calls, strict=True):
        if call.id is not None:
            assert cid == call.id, f"tool-call id {cid!r} is not the upstream's {call.id!r}"
        else:
            assert cid
    assert len(set(client_ids)) == len(client_ids)


def check_openai(cell: Cell, c: ChatCompletion, finish: Finish, max_tokens: int = MAX_TOKENS) -> None:
    """What an OpenAI client saw, against what the upstream said."""
    choice = c.choices[0]
    calls: list[Any] = list(choice.message.tool_calls or [])
    assert choice.finish_reason == OPENAI_FINISH[finish], (choice.finish_reason, choice.message)
    if finish == "tool_calls":
        assert [(t.type, t.function.name) for t in calls] == [("function", "get_weather")]
        assert json.loads(calls[0].function.arguments) == CALL_ARGS
        assert calls[0].id
    else:
        assert choice.message.content and not calls
    u = c.usage
    assert u is not None, "no usage"
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    up = cell.up.reply(cell.p)
    if up is None:  # the local model: no wire to compare with
        assert u.prompt_tokens > 0 and 0 < u.completion_tokens <= max_tokens
        assert finish != "length" or u.completion_tokens == max_tokens
        return
    assert up.finish == finish, f"the fake answered {up.finish}, not {finish}: the scenario is wrong"
    assert (choice.message.content or "") == up.text
    expect_call_ids([t.id for t in calls], up)
    assert [json.loads(t.function.arguments) for t in calls] == [call.args for call in up.calls]
    assert up.usage is not None
    details_in, details_out = u.prompt_tokens_details, u.completion_tokens_details
    seen = (u.prompt_tokens, u.completion_tokens, details_in.cached_tokens if details_in else None,
            details_out.reasoning_tokens if details_out else None)
    assert seen == (up.usage.prompt, up.usage.output, up.usage.cached, up.usage.reasoning), \
        "usage (prompt, completion, cached, reasoning) differs from the upstream's"


def check_anthropic(cell: Cell, m: anthropic.types.Message, finish: Finish, max_tokens: int = MAX_TOKENS) -> None:
    """What an Anthropic client saw, against what the upstream said."""
    assert m.type == "message" and m.role == "assistant"
    assert m.stop_reason == ANTHROPIC_STOP[finish], (m.stop_reason, m.content)
    text = "".join(b.text for b in m.content if b.type == "text")
    uses = [b for b in m.content if b.type == "tool_use"]
    if finish == "tool_calls":
        assert [(b.name, b.input) for b in uses] == [("get_weather", CALL_ARGS)]
        assert uses[0].id
    else:
        assert text and not uses
    u = m.usage
    up = cell.up.reply(cell.p)
    if up is None:
        assert u.input_tokens > 0 and 0 < u.output_tokens <= max_tokens
        assert finish != "length" or u.output_tokens == max_tokens
        return
    assert up.finish == finish, f"the fake answered {up.finish}, not {finish}: the scenario is wrong"
    assert text == up.text
    expect_call_ids([b.id for b in uses], up)
    assert [b.input for b in uses] == [call.args for call in up.calls]
    assert up.usage is not None
    seen = (u.input_tokens, u.cache_read_input_tokens or 0, u.cache_creation_input_tokens or 0, u.output_tokens)
    want = (up.usage.prompt - up.usage.cached - up.usage.cache_write, up.usage.cached, up.usage.cache_write,
            up.usage.output)
    assert seen == want, "usage (input, cache read, cache write, output) differs from the upstream's"


def check_streamed(cell: Cell, stream: bool) -> None:
    if cell.p != "llamacpp":  # the local provider always generates token by token
        assert cell.up.streamed(cell.p) is stream, "the upstream was not called in the matching (streaming) form"


# --- the OpenAI client ---------------------------------------------------------------------------------------------


def oai_create(cell: Cell, messages: Any, **kw: Any) -> ChatCompletion:
    kw.setdefault("max_tokens", MAX_TOKENS)
    completion: ChatCompletion = cell.oai.chat.completions.create(model=cell.model, messages=messages,
                                                                  temperature=0, **kw)
    return completion


def oai_stream(cell: Cell, messages: Any, **kw: Any) -> ChatCompletion:
    """A streamed completion, reassembled by the SDK's own accumulator."""
    kw.setdefault("max_tokens", MAX_TOKENS)
    kw.setdefault("model", cell.model)
    state: ChatCompletionStreamState[None] = ChatCompletionStreamState()
    with cell.oai.chat.completions.create(messages=messages, temperature=0, stream=True,
                                          stream_options={"include_usage": True}, **kw) as stream:
        for chunk in stream:
            state.handle_chunk(chunk)
    return state.get_final_completion()


def oai_plain(cell: Cell) -> None:
    check_openai(cell, oai_create(cell, [{"role": "user", "content": QUESTION}]), "stop")
    check_streamed(cell, False)
    assert QUESTION in conversation_text(cell.p, cell.up.request(cell.p))


def oai_streaming(cell: Cell) -> None:
    check_openai(cell, oai_stream(cell, [{"role": "user", "content": QUESTION}]), "stop")
    check_streamed(cell, True)


def oai_tools(cell: Cell) -> None:
    c = oai_create(cell, [{"role": "user", "content": WEATHER_Q}], tools=[OAI_TOOL], tool_choice=OAI_FORCE)
    check_openai(cell, c, "tool_calls")
    check_streamed(cell, False)


def oai_streaming_tools(cell: Cell) -> None:
    c = oai_stream(cell, [{"role": "user", "content": WEATHER_Q}], tools=[OAI_TOOL], tool_choice=OAI_FORCE)
    check_openai(cell, c, "tool_calls")
    check_streamed(cell, True)


def oai_image(cell: Cell) -> None:
    messages: Any = [{"role": "user", "content": [
        {"type": "text", "text": IMAGE_Q},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}]
    if cell.p == "llamacpp":  # text-only: refused by name, before the model runs
        with pytest.raises(openai.BadRequestError) as e:
            oai_create(cell, messages)
        assert e.value.status_code == 400 and e.value.param == "messages"
        assert "'llamacpp'" in e.value.message and "image" in e.value.message
        assert cell.up.count(cell.p) == 0
        return
    check_openai(cell, oai_create(cell, messages), "stop")
    assert image_in(cell.p, cell.up.request(cell.p)) == ("image/png", PNG)


def oai_system(cell: Cell) -> None:
    c = oai_create(cell, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": SYSTEM_QUESTION}])
    check_openai(cell, c, "stop")
    body = cell.up.request(cell.p)
    assert system_text(cell.p, body) == SYSTEM
    assert SYSTEM not in conversation_text(cell.p, body), "the system prompt also went into the conversation"


def oai_multi_turn(cell: Cell) -> None:
    first = oai_create(cell, [{"role": "user", "content": WEATHER_Q}], tools=[OAI_TOOL], tool_choice=OAI_FORCE)
    check_openai(cell, first, "tool_calls")
    call: Any = (first.choices[0].message.tool_calls or [])[0]
    messages: Any = [
        {"role": "user", "content": WEATHER_Q},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": call.function.name,
                                                             "arguments": call.function.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "content": TOOL_RESULT},
    ]
    check_openai(cell, oai_create(cell, messages, tools=[OAI_TOOL], tool_choice=FOLLOW_UP[cell.p]), "stop")
    check_tool_result_linked(cell, call.id)


def oai_length(cell: Cell) -> None:
    check_openai(cell, oai_create(cell, [{"role": "user", "content": QUESTION}], max_tokens=SHORT), "length",
                 max_tokens=SHORT)


def check_tool_result_linked(cell: Cell, call_id: str) -> None:
    """The upstream got the call back under the id it was given, and the result linked to that call."""
    body = cell.up.request(cell.p)
    if cell.p == "llamacpp":  # calls and results are replayed as text, the result named after its call
        prompt = " ".join(str(m["content"]) for m in body["messages"])
        assert '"name": "get_weather"' in prompt or '"name":"get_weather"' in prompt, prompt
        assert f"Result of get_weather: {TOOL_RESULT}" in prompt, prompt
        return
    ex = tool_exchange(cell.p, body)
    assert (ex.call_name, ex.call_args) == ("get_weather", CALL_ARGS)
    assert TOOL_RESULT in ex.result_text
    if cell.p == "gemini":  # Gemini links a functionResponse to its functionCall by name
        assert ex.result_name == ex.call_name
    else:
        assert ex.call_id == call_id and ex.result_id == call_id, (ex, call_id)


# --- the Anthropic client ------------------------------------------------------------------------------------


def ant_create(cell: Cell, messages: Any, **kw: Any) -> anthropic.types.Message:
    kw.setdefault("max_tokens", MAX_TOKENS)
    message: anthropic.types.Message = cell.ant.messages.create(model=cell.model, messages=messages,
                                                                extra_body={"temperature": 0}, **kw)
    return message


def ant_stream(cell: Cell, messages: Any, **kw: Any) -> anthropic.types.Message:
    """A streamed message, reassembled by the SDK's own accumulator."""
    kw.setdefault("max_tokens", MAX_TOKENS)
    with cell.ant.messages.stream(model=cell.model, messages=messages, extra_body={"temperature": 0}, **kw) as s:
        return s.get_final_message()


def ant_plain(cell: Cell) -> None:
    check_anthropic(cell, ant_create(cell, [{"role": "user", "content": QUESTION}]), "stop")
    check_streamed(cell, False)
    assert QUESTION in conversation_text(cell.p, cell.up.request(cell.p))


def ant_streaming(cell: Cell) -> None:
    check_anthropic(cell, ant_stream(cell, [{"role": "user", "content": QUESTION}]), "stop")
    check_streamed(cell, True)


def ant_tools(cell: Cell) -> None:
    m = ant_create(cell, [{"role": "user", "content": WEATHER_Q}], tools=[ANT_TOOL], tool_choice=ANT_FORCE)
    check_anthropic(cell, m, "tool_calls")
    check_streamed(cell, False)


def ant_streaming_tools(cell: Cell) -> None:
    m = ant_stream(cell, [{"role": "user", "content": WEATHER_Q}], tools=[ANT_TOOL], tool_choice=ANT_FORCE)
    check_anthropic(cell, m, "tool_calls")
    check_streamed(cell, True)


def ant_image(cell: Cell) -> None:
    messages: Any = [{"role": "user", "content": [
        {"type": "text", "text": IMAGE_Q},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]}]
    if cell.p == "llamacpp":
        with pytest.raises(anthropic.BadRequestError) as e:
            ant_create(cell, messages)
        assert e.value.status_code == 400
        body: Any = e.value.body
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        message = body["error"]["message"]
        assert message.startswith("messages ") and "'llamacpp'" in message and "image" in message, message
        assert cell.up.count(cell.p) == 0
        return
    check_anthropic(cell, ant_create(cell, messages), "stop")
    assert image_in(cell.p, cell.up.request(cell.p)) == ("image/png", PNG)


def ant_system(cell: Cell) -> None:
    check_anthropic(cell, ant_create(cell, [{"role": "user", "content": SYSTEM_QUESTION}], system=SYSTEM), "stop")
    body = cell.up.request(cell.p)
    assert system_text(cell.p, body) == SYSTEM
    assert SYSTEM not in conversation_text(cell.p, body), "the system prompt also went into the conversation"


def ant_multi_turn(cell: Cell) -> None:
    first = ant_create(cell, [{"role": "user", "content": WEATHER_Q}], tools=[ANT_TOOL], tool_choice=ANT_FORCE)
    check_anthropic(cell, first, "tool_calls")
    use: Any = next(b for b in first.content if b.type == "tool_use")
    messages: Any = [
        {"role": "user", "content": WEATHER_Q},
        {"role": "assistant", "content": [{"type": "tool_use", "id": use.id, "name": use.name, "input": use.input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": TOOL_RESULT}]},
    ]
    m = ant_create(cell, messages, tools=[ANT_TOOL], tool_choice={"type": FOLLOW_UP[cell.p]})
    check_anthropic(cell, m, "stop")
    check_tool_result_linked(cell, use.id)


def ant_length(cell: Cell) -> None:
    check_anthropic(cell, ant_create(cell, [{"role": "user", "content": QUESTION}], max_tokens=SHORT), "length",
                    max_tokens=SHORT)


OPENAI_CELLS: dict[str, Callable[[Cell], None]] = {
    "plain": oai_plain, "streaming": oai_streaming, "tools": oai_tools, "streaming_tools": oai_streaming_tools,
    "image": oai_image, "system": oai_system, "multi_turn": oai_multi_turn, "length": oai_length,
}
ANTHROPIC_CELLS: dict[str, Callable[[Cell], None]] = {
    "plain": ant_plain, "streaming": ant_streaming, "tools": ant_tools, "streaming_tools": ant_streaming_tools,
    "image": ant_image, "system": ant_system, "multi_turn": ant_multi_turn, "length": ant_length,
}


def matrix(client: str) -> list[Any]:
    cells = []
    for p in PROVIDERS:
        for s in SCENARIOS:
            marks: list[pytest.MarkDecorator] = []
            if p == "llamacpp":
                marks.append(NEEDS_LOCAL)
            if (client, p, s) in KNOWN_BUGS:
                marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[(client, p, s)]))
            cells.append(pytest.param(p, s, id=f"{p}-{s}", marks=marks))
    return cells


@pytest.mark.parametrize(("provider", "scenario"), matrix("openai"))
def test_openai_client(oai: openai.OpenAI, ant: anthropic.Anthropic, up: Upstreams, provider: Provider,
                       scenario: str) -> None:
    OPENAI_CELLS[scenario](Cell(oai, ant, up, provider))


@pytest.mark.parametrize(("provider", "scenario"), matrix("anthropic"))
def test_anthropic_client(oai: openai.OpenAI, ant: anthropic.Anthropic, up: Upstreams, provider: Provider,
                          scenario: str) -> None:
    ANTHROPIC_CELLS[scenario](Cell(oai, ant, up, provider))


# --- same protocol: lossless pass-through --------------------------------------------------------------------

PROBE: Any = {"x_matrix_probe": {"nested": [1, {"keep": None}], "text": "é"}, "store": False,
              "logit_bias": {"50256": -100}}


def _sent(raw: Any) -> dict[str, Any]:
    """The JSON body that the SDK sent to the gateway."""
    body = json.loads(raw.http_response.request.content)
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streaming"])
def test_openai_to_openai_is_lossless(oai: openai.OpenAI, up: Upstreams, stream: bool) -> None:
    kw: Any = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
    with oai.chat.completions.with_streaming_response.create(
            model="m-openai", messages=[{"role": "user", "content": QUESTION}], max_tokens=MAX_TOKENS,
            extra_body=PROBE, **kw) as raw:
        received = b"".join(raw.iter_bytes())
        sent = _sent(raw)
    upstream = up.request("openai")
    assert upstream == {**sent, "model": UPSTREAM_MODEL["openai"]}, "the request did not pass through unchanged"
    assert upstream["x_matrix_probe"] == PROBE["x_matrix_probe"]
    answer = up.taps["openai"].last
    if stream:  # chunk for chunk, unknown fields ("obfuscation", "service_tier") included
        assert sse_events(received) == sse_events(answer)
        assert "obfuscation" in json.loads(sse_events(received)[0][1])
    else:
        assert json.loads(received) == json.loads(answer)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streaming"])
def test_anthropic_to_anthropic_is_lossless(ant: anthropic.Anthropic, up: Upstreams, stream: bool) -> None:
    probe = {"x_matrix_probe": PROBE["x_matrix_probe"], "context_management": {"edits": []}}
    with ant.messages.with_streaming_response.create(
            model="m-anthropic", max_tokens=MAX_TOKENS, messages=[{"role": "user", "content": QUESTION}],
            system=[{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}], stream=stream,
            extra_body=probe) as raw:
        received = b"".join(raw.iter_bytes())
        sent = _sent(raw)
    upstream = up.request("anthropic")
    if sent.get("stream") is False:  # the default, which the gateway leaves out for a non-streaming call
        del sent["stream"]
    assert upstream == {**sent, "model": UPSTREAM_MODEL["anthropic"]}, "the request did not pass through unchanged"
    answer = up.taps["anthropic"].last
    if stream:  # event for event, ping and the fields the SDK does not model (usage.service_tier) included
        assert sse_events(received) == sse_events(answer)
        assert ("ping", '{"type":"ping"}') in sse_events(received)
    else:
        assert json.loads(received) == json.loads(answer)
        assert json.loads(received)["usage"]["service_tier"] == "standard"


# --- what cannot be translated is refused by name ------------------------------------------------------------


def refusals(bugs: dict[Provider, str], *providers: Provider) -> list[Any]:
    """Providers as parameters: xfail(strict) where a bug lets the request through, skipped without the local model."""
    out = []
    for p in providers:
        marks = [NEEDS_LOCAL] if p == "llamacpp" else []
        if p in bugs:
            marks.append(pytest.mark.xfail(strict=True, reason=bugs[p]))
        out.append(pytest.param(p, id=p, marks=marks))
    return out


@pytest.mark.parametrize("provider", refusals({}, "anthropic", "bedrock", "llamacpp"))
def test_openai_n_above_1_is_a_400_naming_n_and_the_provider(oai: openai.OpenAI, up: Upstreams,
                                                              provider: Provider) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model=f"m-{provider}", messages=[{"role": "user", "content": QUESTION}], n=2,
                                    max_tokens=MAX_TOKENS)
    assert e.value.status_code == 400
    assert e.value.param == "n" and e.value.code == "unsupported_parameter"
    assert f"provider '{provider}'" in e.value.message, e.value.message
    assert up.count(provider) == 0, "the upstream was called anyway"


@pytest.mark.parametrize("provider", ["openai", "gemini"])
def test_openai_n_above_1_translates_where_the_upstream_can(oai: openai.OpenAI, up: Upstreams,
                                                              provider: Provider) -> None:
    c = oai.chat.completions.create(model=f"m-{provider}", messages=[{"role": "user", "content": QUESTION}], n=2,
                                    max_tokens=MAX_TOKENS)
    assert [ch.index for ch in c.choices] == [0, 1]
    assert all(ch.message.content == f"Echo: {QUESTION}" and ch.finish_reason == "stop" for ch in c.choices)
    body = up.request(provider)
    assert (body["n"] if provider == "openai" else body["generationConfig"]["candidateCount"]) == 2


@pytest.mark.parametrize("provider", refusals({}, "anthropic", "gemini", "bedrock", "llamacpp"))
def test_openai_logit_bias_is_a_400_naming_it_and_the_provider(oai: openai.OpenAI, up: Upstreams,
                                                                provider: Provider) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model=f"m-{provider}", messages=[{"role": "user", "content": QUESTION}],
                                    max_tokens=MAX_TOKENS, logit_bias={"50256": -100})
    assert e.value.status_code == 400 and e.value.param == "logit_bias"
    assert "logit_bias" in e.value.message and f"provider '{provider}'" in e.value.message, e.value.message
    assert up.count(provider) == 0, "the upstream was called anyway"


def anthropic_refusal(e: pytest.ExceptionInfo[anthropic.BadRequestError]) -> str:
    """The message of an Anthropic error object (which has no param field: the message names it)."""
    assert e.value.status_code == 400
    body: Any = e.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
    return str(body["error"]["message"])


SERVER_TOOL: Any = {"type": "web_search_20250305", "name": "web_search", "max_uses": 1}


@pytest.mark.parametrize("provider", refusals({},
                                              "openai", "gemini", "bedrock", "llamacpp"))
def test_anthropic_server_tool_is_a_400_naming_it_and_the_provider(ant: anthropic.Anthropic, up: Upstreams,
                                                                   provider: Provider) -> None:
    with pytest.raises(anthropic.BadRequestError) as e:
        ant.messages.create(model=f"m-{provider}", max_tokens=MAX_TOKENS, tools=[SERVER_TOOL],
                            messages=[{"role": "user", "content": "Search the web for the weather in Paris."}])
    message = anthropic_refusal(e)
    assert "web_search" in message and "tools" in message and f"'{provider}'" in message, message
    assert up.count(provider) == 0, "the upstream was called anyway"


@pytest.mark.parametrize("provider", refusals({},
                                              "openai", "gemini", "bedrock", "llamacpp"))
def test_anthropic_server_tool_blocks_are_a_400_naming_them_and_the_provider(ant: anthropic.Anthropic, up: Upstreams,
                                                                             provider: Provider) -> None:
    history: Any = [
        {"role": "user", "content": "Search the web for the weather in Paris."},
        {"role": "assistant", "content": [
            {"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", "input": {"query": "Paris"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01", "content": []},
            {"type": "text", "text": "I found nothing."}]},
        {"role": "user", "content": "Thanks anyway."},
    ]
    with pytest.raises(anthropic.BadRequestError) as e:
        ant.messages.create(model=f"m-{provider}", max_tokens=MAX_TOKENS, messages=history)
    message = anthropic_refusal(e)
    assert "server_tool_use" in message or "Anthropic-only" in message, message
    assert f"'{provider}'" in message, message
    assert up.count(provider) == 0, "the upstream was called anyway"


MCP_SERVERS: Any = [{"type": "url", "url": "https://mcp.example.com/sse", "name": "example"}]


@pytest.mark.parametrize("provider", refusals({}, "openai", "gemini", "bedrock", "llamacpp"))
def test_anthropic_mcp_servers_is_a_400_naming_it_and_the_provider(ant: anthropic.Anthropic, up: Upstreams,
                                                                   provider: Provider) -> None:
    with pytest.raises(anthropic.BadRequestError) as e:
        ant.messages.create(model=f"m-{provider}", max_tokens=MAX_TOKENS, extra_body={"mcp_servers": MCP_SERVERS},
                            messages=[{"role": "user", "content": QUESTION}])
    message = anthropic_refusal(e)
    assert "mcp_servers" in message and f"'{provider}'" in message, message
    assert up.count(provider) == 0, "the upstream was called anyway"


# --- Gemini 3: the thought signature of a function call rides in the tool-call id --------------------------------


@pytest.mark.parametrize("client", ["openai", "anthropic"])
def test_gemini3_call_signature_survives_the_round_trip(oai: openai.OpenAI, ant: anthropic.Anthropic, up: Upstreams,
                                                        client: str) -> None:
    """Gemini 3 signs a function call and refuses the call turn sent back without that signature; neither client
    protocol has a field for it, so it must survive in the tool-call id (streamed, then sent back)."""
    cell = Cell(oai, ant, up, "gemini")
    if client == "openai":
        first = oai_stream(cell, [{"role": "user", "content": WEATHER_Q}], tools=[OAI_TOOL], tool_choice=OAI_FORCE,
                           model="m-gemini3")
        call: Any = (first.choices[0].message.tool_calls or [])[0]
        call_id, args = call.id, call.function.arguments
    else:
        with ant.messages.stream(model="m-gemini3", max_tokens=MAX_TOKENS, tools=[ANT_TOOL], tool_choice=ANT_FORCE,
                                 messages=[{"role": "user", "content": WEATHER_Q}]) as s:
            use: Any = next(b for b in s.get_final_message().content if b.type == "tool_use")
        call_id, args = use.id, json.dumps(use.input)
    issued = [p["thoughtSignature"] for frame in upstream_reply("gemini", up.taps["gemini"].last).raw
              for c in frame.get("candidates") or [] for p in c["content"]["parts"] if "functionCall" in p]
    assert len(issued) == 1 and issued[0] in up.gemini.issued_signatures
    if client == "openai":
        messages: Any = [
            {"role": "user", "content": WEATHER_Q},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": args}}]},
            {"role": "tool", "tool_call_id": call_id, "content": TOOL_RESULT}]
        c = oai.chat.completions.create(model="m-gemini3", messages=messages, tools=[OAI_TOOL],
                                        max_tokens=MAX_TOKENS)
        assert c.choices[0].finish_reason == "stop" and TOOL_RESULT in (c.choices[0].message.content or "")
    else:
        m = ant.messages.create(model="m-gemini3", max_tokens=MAX_TOKENS, tools=[ANT_TOOL], messages=[
            {"role": "user", "content": WEATHER_Q},
            {"role": "assistant", "content": [{"type": "tool_use", "id": call_id, "name": "get_weather",
                                               "input": json.loads(args)}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": TOOL_RESULT}]}])
        assert m.stop_reason == "end_turn"
        assert TOOL_RESULT in "".join(b.text for b in m.content if b.type == "text")
    model_turn = up.request("gemini")["contents"][1]
    assert model_turn["role"] == "model"
    assert model_turn["parts"][0]["thoughtSignature"] == issued[0], "the call went back without its signature"
