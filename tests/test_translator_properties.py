"""Property tests of the translators (providers/*_wire.py), judged by the providers' own types.

Requests: every request that the neutral model accepts either renders, for each wire API, into a body that the
provider's own types accept, or is refused with a 400 that names the parameter (``UnsupportedParameter`` or
``InvalidRequest``: something that API cannot express); never another exception. The judges:

* OpenAI: the ``openai`` SDK's ``CompletionCreateParamsNonStreaming`` (a TypedDict), through a pydantic TypeAdapter;
* Anthropic: the ``anthropic`` SDK's ``MessageCreateParamsNonStreaming``, likewise;
* Gemini: ``google.genai.types`` (``Content``, ``Tool``, ``ToolConfig``, ``GenerationConfig``: pydantic models that
  forbid unknown fields, read in the REST API's camelCase);
* Bedrock: botocore's ``ParamValidator`` against the ``bedrock-runtime`` ``Converse`` input shape.

The SDKs' TypedDicts ignore unknown keys and validate ``Iterable`` fields lazily, so a body is judged valid only
when its validated form, every iterable drained, equals the body itself: a misspelt or misplaced key is dropped by
validation and so caught as a difference.

And back: the OpenAI and Anthropic bodies parse again through the inbound adapters (``protocols``) into a request
with the same conversation (texts, tool calls and their arguments, tool results). Replies: neutral replies rendered
by the inbound adapters validate against the SDKs' reply models and parse back through the providers' parsers with
text, tool calls and usage intact; Gemini and Bedrock replies built in their own shapes (and validated by their
own types) parse into the neutral model with the same invariants.

Fixed seed (``derandomize``), a bounded number of examples per property: the module runs in seconds.
"""

from __future__ import annotations

import base64
from typing import Any

import botocore.session
import orjson
import pytest
from anthropic.types import Message as AnthropicMessage
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
from botocore.validate import ParamValidator
from google.genai import types as gt
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion
from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming
from pydantic import TypeAdapter

from switchyard.errors import InvalidRequest
from switchyard.messages import (
    AudioPart,
    ChatRequest,
    ChatResponse,
    Choice,
    FilePart,
    FinishReason,
    ImagePart,
    Message,
    Part,
    ReasoningPart,
    ResponseFormat,
    Role,
    TextPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    Usage,
)
from switchyard.protocols import anthropic_messages, openai_chat
from switchyard.providers import anthropic_wire, bedrock_wire, gemini_wire, openai_wire

PROPERTY = settings(max_examples=60, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

OPENAI_BODY = TypeAdapter(CompletionCreateParamsNonStreaming)
ANTHROPIC_BODY = TypeAdapter(MessageCreateParamsNonStreaming)
CONVERSE = botocore.session.get_session().get_service_model("bedrock-runtime").operation_model("Converse")

# --- strategies: neutral requests --------------------------------------------------------------------------------

text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
words = st.text("abcdefghij klmnop", min_size=1, max_size=12)
ident = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,11}", fullmatch=True)
b64 = st.binary(min_size=1, max_size=12).map(lambda b: base64.b64encode(b).decode())
json_value = st.recursive(st.none() | st.booleans() | st.integers(-1000, 1000) | text,
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ident, inner, max_size=3),
                          max_leaves=6)
arguments = st.dictionaries(ident, json_value, max_size=3).map(lambda d: orjson.dumps(d).decode())
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 8).decode()

text_part = st.builds(TextPart, text=text)
image_part = st.one_of(
    st.builds(ImagePart, url=st.sampled_from(["https://example.com/a.png", "s3://bucket/b.jpeg"])),
    st.builds(ImagePart, data=st.just(PNG), media_type=st.sampled_from(["image/png", "image/jpeg", "image/webp",
                                                                        "image/gif"]),
              detail=st.sampled_from([None, "auto", "low", "high"])),
)
file_part = st.one_of(
    st.builds(FilePart, data=b64, media_type=st.sampled_from(["application/pdf", "text/plain"]),
              filename=st.sampled_from([None, "report.pdf", "notes.txt"])),
    st.builds(FilePart, file_id=ident),
)
audio_part = st.builds(AudioPart, data=b64, format=st.sampled_from(["wav", "mp3"]))
call_part = st.builds(ToolCallPart, id=ident, name=ident, arguments=arguments)
result_part = st.builds(ToolResultPart, tool_call_id=ident, content=st.lists(text_part, max_size=2),
                        is_error=st.booleans())
reasoning_part = st.one_of(st.builds(ReasoningPart, text=words, signature=b64),  # signatures are base64
                           st.builds(ReasoningPart, redacted=b64))

system_message = st.builds(Message, role=st.just(Role.SYSTEM), parts=st.lists(st.builds(TextPart, text=words),
                                                                              min_size=1, max_size=2))
user_message = st.builds(Message, role=st.just(Role.USER), parts=st.lists(
    st.one_of(text_part, text_part, image_part, file_part, audio_part, result_part), min_size=1, max_size=3))
assistant_message = st.builds(Message, role=st.just(Role.ASSISTANT), parts=st.lists(
    st.one_of(text_part, call_part, reasoning_part), min_size=1, max_size=3))
tool_message = st.builds(Message, role=st.just(Role.TOOL), parts=st.lists(result_part, min_size=1, max_size=1))

tool = st.builds(Tool, name=ident, description=st.none() | words, strict=st.none() | st.booleans(),
                 parameters=st.none() | st.fixed_dictionaries({"type": st.just("object"), "properties": st.dictionaries(
                     ident, st.sampled_from([{"type": "string"}, {"type": "integer"}]), max_size=2)}))
tool_choice = st.one_of(st.builds(ToolChoice, mode=st.sampled_from(["auto", "none", "required"])),
                        st.builds(ToolChoice, mode=st.just("tool"), name=ident))
response_format = st.one_of(
    st.builds(ResponseFormat, type=st.sampled_from(["text", "json_object"])),
    st.builds(ResponseFormat, type=st.just("json_schema"), name=st.none() | ident, strict=st.none() | st.booleans(),
              schema=st.just({"type": "object", "properties": {"a": {"type": "string"}}})),
)


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


@st.composite
def chat_requests(draw: st.DrawFn, plain: bool = False) -> ChatRequest:
    """A neutral request: an optional system prompt, then turns; with ``plain``, text only and common options."""
    messages: list[Message] = []
    if draw(st.booleans()):
        messages.append(draw(system_message))
    if plain:
        turns = st.builds(Message, role=st.sampled_from([Role.USER, Role.ASSISTANT]),
                          parts=st.lists(st.builds(TextPart, text=words), min_size=1, max_size=2))
        messages += draw(st.lists(turns, min_size=1, max_size=4))
        return ChatRequest(model="m", messages=messages, wire="neutral",
                           max_tokens=draw(_optional(st.integers(1, 8192))),
                           temperature=draw(_optional(st.floats(0, 1))), top_p=draw(_optional(st.floats(0, 1))),
                           stop=draw(_optional(st.lists(words, min_size=1, max_size=2))))
    messages += draw(st.lists(st.one_of(user_message, assistant_message, tool_message), min_size=1, max_size=4))
    tools = draw(_optional(st.lists(tool, min_size=1, max_size=2)))
    req = ChatRequest(
        model="m", messages=messages, wire="neutral",
        max_tokens=draw(_optional(st.integers(1, 32000))),
        temperature=draw(_optional(st.floats(0, 1))), top_p=draw(_optional(st.floats(0, 1))),
        stop=draw(_optional(st.lists(words, min_size=1, max_size=3))),
        tools=tools, tool_choice=draw(_optional(tool_choice)) if tools else None,
        parallel_tool_calls=draw(_optional(st.booleans())) if tools else None,
        response_format=draw(_optional(response_format)),
        reasoning_effort=draw(_optional(st.sampled_from(["low", "medium", "high"]))),
        reasoning_budget=draw(_optional(st.integers(1024, 16000))),
        user=draw(_optional(ident)), metadata=draw(_optional(st.dictionaries(ident, words, max_size=2))),
    )
    if draw(st.booleans()):  # options that only some APIs have (their translators refuse them by name)
        req.temperature = draw(_optional(st.floats(0, 2)))
        req.top_k = draw(_optional(st.integers(0, 100)))
        req.n = draw(_optional(st.integers(1, 3)))
        req.seed = draw(_optional(st.integers(0, 2**31)))
        req.presence_penalty = draw(_optional(st.floats(-2, 2)))
        req.frequency_penalty = draw(_optional(st.floats(-2, 2)))
        req.logprobs = draw(_optional(st.booleans()))
        req.top_logprobs = draw(_optional(st.integers(0, 5)))
    return req


# --- the judges --------------------------------------------------------------------------------------------------


def _drain(value: Any) -> Any:
    """A validated TypedDict with every lazily validated iterable read (which validates its items)."""
    if isinstance(value, dict):
        return {k: _drain(v) for k, v in value.items()}
    if isinstance(value, list | tuple) or type(value).__name__ == "ValidatorIterator":
        return [_drain(v) for v in value]
    return value


def _accepted_by(adapter: TypeAdapter[Any], body: dict[str, Any]) -> None:
    validated = _drain(adapter.validate_python(body))
    assert validated == body, f"the SDK's types drop or change part of the body:\n{body}\n{validated}"


def _gemini_accepts(body: dict[str, Any]) -> None:
    assert set(body) <= {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig"}, body
    for c in body["contents"]:
        gt.Content.model_validate(c)
    if "systemInstruction" in body:
        gt.Content.model_validate(body["systemInstruction"])
    for t in body.get("tools", []):
        gt.Tool.model_validate(t)
    if "toolConfig" in body:
        gt.ToolConfig.model_validate(body["toolConfig"])
    if "generationConfig" in body:
        gt.GenerationConfig.model_validate(body["generationConfig"])


def _bedrock_accepts(body: dict[str, Any]) -> None:
    report = ParamValidator().validate({"modelId": "m", **body}, CONVERSE.input_shape)
    assert not report.has_errors(), report.generate_report()


# The ``anthropic`` SDK this suite installs (2.x) declares no sampling parameters in MessageCreateParams, while
# the Messages API reference that the translator and tests/support/fake_anthropic.py follow still documents
# temperature, top_p and top_k (0-1, 0-1, >= 0). The translator keeps sending them; they are judged here by that
# reference, and everything else by the SDK's types.
ANTHROPIC_SAMPLING = {"temperature": (float, 0, 1), "top_p": (float, 0, 1), "top_k": (int, 0, None)}


def _anthropic_accepts(body: dict[str, Any]) -> None:
    for name, (kind, low, high) in ANTHROPIC_SAMPLING.items():
        if name in body:
            value = body[name]
            assert isinstance(value, kind | int) and value >= low and (high is None or value <= high), (name, value)
    _accepted_by(ANTHROPIC_BODY, {k: v for k, v in body.items() if k not in ANTHROPIC_SAMPLING})


RENDERERS = {
    "openai": (lambda r: openai_wire.render_request(r, "gpt-test", provider="openai", official=True),
               lambda b: _accepted_by(OPENAI_BODY, b)),
    "anthropic": (lambda r: anthropic_wire.render_request(r, "claude-test", provider="anthropic",
                                                          default_max_tokens=4096, stream=False),
                  _anthropic_accepts),
    "gemini": (lambda r: gemini_wire.render_request(r, "gemini-2.5-flash", provider="gemini"), _gemini_accepts),
    "bedrock": (lambda r: bedrock_wire.render_request(r, provider="bedrock"), _bedrock_accepts),
}


def _render(wire: str, req: ChatRequest) -> dict[str, Any] | None:
    """The body, or None when the translator refuses the request with a 400 naming the parameter."""
    render, _ = RENDERERS[wire]
    try:
        body: dict[str, Any] = render(req)
    except InvalidRequest as e:  # UnsupportedParameter included: a clear 400 in the caller's protocol
        assert e.status == 400 and e.param, f"a refusal must name the parameter: {e.message}"
        event(f"{wire}: refused ({e.param.split('[')[0]})")  # --hypothesis-show-statistics shows the mix
        return None
    event(f"{wire}: rendered")
    return body


@pytest.mark.parametrize("wire", sorted(RENDERERS))
@PROPERTY
@given(req=chat_requests())
def test_every_neutral_request_renders_to_what_the_provider_accepts_or_is_refused_by_name(
        wire: str, req: ChatRequest) -> None:
    body = _render(wire, req)
    if body is not None:
        RENDERERS[wire][1](body)


@pytest.mark.parametrize("wire", sorted(RENDERERS))
@PROPERTY
@given(req=chat_requests(plain=True))
def test_plain_conversations_always_render(wire: str, req: ChatRequest) -> None:
    """Text turns and the options every provider has are never refused: the property above is not vacuous."""
    body = _render(wire, req)
    assert body is not None
    RENDERERS[wire][1](body)


# --- and back: requests ------------------------------------------------------------------------------------------


def _conversation(req: ChatRequest) -> dict[str, Any]:
    """What a translation must keep: the system text, the other turns' text, tool calls with their arguments as
    JSON values, and tool results with their text, each in order."""
    system = "".join(m.text() for m in req.messages if m.role is Role.SYSTEM)
    turns, calls, results = [], [], []
    for m in req.messages:
        if m.role is Role.SYSTEM:
            continue
        for p in m.parts:
            if isinstance(p, TextPart) and p.text:
                turns.append(p.text)
            elif isinstance(p, ToolCallPart):
                calls.append((p.id, p.name, orjson.loads(p.arguments or "{}")))
            elif isinstance(p, ToolResultPart):
                results.append((p.tool_call_id, "".join(c.text for c in p.content if isinstance(c, TextPart))))
    return {"system": system, "text": "".join(turns), "calls": calls, "results": results}


@PROPERTY
@given(req=chat_requests())
def test_openai_bodies_parse_back_to_the_same_conversation(req: ChatRequest) -> None:
    body = _render("openai", req)
    if body is None:
        return
    back = openai_chat.parse_request(orjson.loads(orjson.dumps(body)))
    assert _conversation(back) == _conversation(req)
    assert (back.max_tokens, back.temperature, back.top_p, back.stop) == (req.max_tokens, req.temperature,
                                                                         req.top_p, req.stop)


@PROPERTY
@given(req=chat_requests())
def test_anthropic_bodies_parse_back_to_the_same_conversation(req: ChatRequest) -> None:
    body = _render("anthropic", req)
    if body is None:
        return
    back = anthropic_messages.parse_request(orjson.loads(orjson.dumps(body)))
    want = _conversation(req)
    got = _conversation(back)
    assert got["calls"] == want["calls"] and got["results"] == want["results"]
    assert got["text"] == want["text"]
    # Anthropic has one system prompt: several system messages are joined by blank lines
    assert got["system"].replace("\n\n", "") == want["system"]


# --- and back: replies -------------------------------------------------------------------------------------------

usage = st.builds(Usage, input_tokens=st.integers(0, 10**6), output_tokens=st.integers(0, 10**6),
                  reasoning_tokens=st.integers(0, 1000))


@st.composite
def neutral_replies(draw: st.DrawFn) -> ChatResponse:
    parts: list[Part] = draw(st.lists(st.one_of(st.builds(TextPart, text=words), call_part), min_size=1,
                                      max_size=3))
    u = draw(usage)
    u.cached_tokens = draw(st.integers(0, u.input_tokens))
    u.reasoning_tokens = min(u.reasoning_tokens, u.output_tokens)
    has_calls = any(isinstance(p, ToolCallPart) for p in parts)
    reason = FinishReason.TOOL_CALLS if has_calls else draw(st.sampled_from([FinishReason.STOP, FinishReason.LENGTH]))
    return ChatResponse(id="r1", model="m", created=1_700_000_000,
                        choices=[Choice(index=0, message=Message(Role.ASSISTANT, parts), finish_reason=reason)],
                        usage=u)


def _reply(resp: ChatResponse) -> tuple[str, list[tuple[str, str, Any]], FinishReason | None]:
    c = resp.choices[0]
    calls = [(p.id, p.name, orjson.loads(p.arguments or "{}")) for p in c.message.parts if isinstance(p, ToolCallPart)]
    return c.message.text(), calls, c.finish_reason


@PROPERTY
@given(resp=neutral_replies())
def test_openai_replies_round_trip(resp: ChatResponse) -> None:
    wire = orjson.loads(openai_chat.render_response(resp))
    ChatCompletion.model_validate(wire)  # the SDK's own reply type
    back = openai_wire.parse_response(wire)
    assert _reply(back) == _reply(resp)
    assert back.usage is not None and resp.usage is not None
    assert (back.usage.input_tokens, back.usage.output_tokens, back.usage.cached_tokens,
            back.usage.reasoning_tokens) == (resp.usage.input_tokens, resp.usage.output_tokens,
                                             resp.usage.cached_tokens, resp.usage.reasoning_tokens)


@PROPERTY
@given(resp=neutral_replies())
def test_anthropic_replies_round_trip(resp: ChatResponse) -> None:
    wire = orjson.loads(anthropic_messages.render_response(resp, "m"))
    AnthropicMessage.model_validate(wire)
    back = anthropic_wire.parse_response(wire)
    assert _reply(back) == _reply(resp)
    assert back.usage is not None and resp.usage is not None
    assert (back.usage.input_tokens, back.usage.output_tokens, back.usage.cached_tokens) == (
        resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.cached_tokens)


gemini_part = st.one_of(st.builds(lambda t: {"text": t}, words),
                        st.builds(lambda n, a: {"functionCall": {"name": n, "args": orjson.loads(a)}}, ident,
                                  arguments))


@PROPERTY
@given(parts=st.lists(gemini_part, min_size=1, max_size=3), prompt=st.integers(0, 10**6),
       out=st.integers(0, 10**6), cached=st.integers(0, 1000), thoughts=st.integers(0, 1000),
       finish=st.sampled_from(["STOP", "MAX_TOKENS", "SAFETY"]))
def test_gemini_replies_parse_into_the_neutral_model(parts: list[dict[str, Any]], prompt: int, out: int,
                                                     cached: int, thoughts: int, finish: str) -> None:
    data = {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish}],
            "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": out,
                              "cachedContentTokenCount": cached, "thoughtsTokenCount": thoughts},
            "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"}
    gt.GenerateContentResponse.model_validate(data)  # google-genai's own reply type
    back = gemini_wire.parse_response(data, "gemini-2.5-flash")
    text, calls, reason = _reply(back)
    assert text == "".join(p.get("text", "") for p in parts)
    assert [(name, args) for _, name, args in calls] == [
        (p["functionCall"]["name"], p["functionCall"]["args"]) for p in parts if "functionCall" in p]
    assert len({cid for cid, _, _ in calls}) == len(calls)  # every call has its own id
    assert reason is {"MAX_TOKENS": FinishReason.LENGTH, "SAFETY": FinishReason.CONTENT_FILTER}.get(
        finish, FinishReason.TOOL_CALLS if calls else FinishReason.STOP)
    assert back.usage == Usage(input_tokens=prompt, output_tokens=out + thoughts, cached_tokens=cached,
                               reasoning_tokens=thoughts)


bedrock_block = st.one_of(st.builds(lambda t: {"text": t}, words),
                          st.builds(lambda i, n, a: {"toolUse": {"toolUseId": i, "name": n, "input": orjson.loads(a)}},
                                    ident, ident, arguments))


@PROPERTY
@given(blocks=st.lists(bedrock_block, min_size=1, max_size=3), inp=st.integers(0, 10**6), out=st.integers(0, 10**6),
       read=st.integers(0, 1000), write=st.integers(0, 1000),
       stop=st.sampled_from(["end_turn", "tool_use", "max_tokens", "stop_sequence", "content_filtered"]))
def test_bedrock_replies_parse_into_the_neutral_model(blocks: list[dict[str, Any]], inp: int, out: int, read: int,
                                                      write: int, stop: str) -> None:
    data = {"output": {"message": {"role": "assistant", "content": blocks}}, "stopReason": stop,
            "usage": {"inputTokens": inp, "outputTokens": out, "totalTokens": inp + out,
                      "cacheReadInputTokens": read, "cacheWriteInputTokens": write},
            "metrics": {"latencyMs": 5}}
    report = ParamValidator().validate(data, CONVERSE.output_shape)  # botocore's own Converse output shape
    assert not report.has_errors(), report.generate_report()
    back = bedrock_wire.parse_response(data, id="r1", model="m", created=1)
    text, calls, _ = _reply(back)
    assert text == "".join(b.get("text", "") for b in blocks)
    assert calls == [(b["toolUse"]["toolUseId"], b["toolUse"]["name"], b["toolUse"]["input"])
                     for b in blocks if "toolUse" in b]
    assert back.usage == Usage(input_tokens=inp + read + write, output_tokens=out, cached_tokens=read,
                               cache_write_tokens=write)
