"""Neutral objects to Gemini API request bodies, and Gemini replies and stream frames back.

Wire format (the REST JSON is camelCase): https://ai.google.dev/api/generate-content (GenerateContentRequest,
GenerationConfig, GenerateContentResponse, Candidate, UsageMetadata, PromptFeedback), https://ai.google.dev/api/caching
(Content, Part, Blob, FileData, FunctionCall, FunctionResponse, Tool, FunctionDeclaration, Schema, ToolConfig),
https://ai.google.dev/api/embeddings (batchEmbedContents), https://ai.google.dev/gemini-api/docs/thought-signatures.
Field names are checked against the google-genai SDK (``types.py``; ``models.py``'s ``*_to_mldev`` serializers).
Pure functions; the HTTP side is in ``providers.gemini``.

Decisions worth knowing:

* Thought signatures. A signature on a thought or text part becomes ``ReasoningPart.signature`` (an empty-text
  ``ReasoningPart`` when it sits on a text part) and goes back on the next part it preceded. A signature on a
  ``functionCall`` part has no neutral home that survives an OpenAI client, so it travels inside the tool call id:
  ``call_<hex>__ts_<urlsafe base64>``; Gemini 3 rejects a function call turn without it. When a Gemini 3 model gets a
  function call with no signature at all (history from another model), the documented
  ``skip_thought_signature_validator`` value is sent instead.
* Unsigned reasoning text (from another provider, or thought summaries) is not sent back: Gemini reads nothing from it.
* System messages, wherever they stand, go to ``systemInstruction`` (Gemini has no other place for them); consecutive
  turns of one role merge, so parallel tool results arrive as one ``user`` Content of ``functionResponse`` parts.
* Thinking: ``reasoning_budget`` → ``thinkingBudget``; ``reasoning_effort`` → ``thinkingLevel`` on Gemini 3, else a
  budget (low 1024, medium 8192, high 24576, as Google's OpenAI-compatible endpoint does); ``includeThoughts`` is set
  so that thought summaries come back as reasoning.
* Tool parameter schemas are reduced to Gemini's OpenAPI subset (``_SCHEMA_KEYS``): ``$ref`` is inlined, ``oneOf``
  becomes ``anyOf``, ``const`` becomes a one-value ``enum``, a ``null`` type becomes ``nullable``, and every other key
  (``additionalProperties``, ``$schema``, ``strict``, ``patternProperties``, ``exclusiveMinimum``, ``multipleOf``,
  ``uniqueItems``, unsupported ``format`` values ...) is stripped. ``response_format`` json_schema is sent whole as
  ``responseJsonSchema``, which takes JSON Schema (only ``$schema`` is dropped).
* ``parallel_tool_calls=False`` cannot be asked of Gemini, so it is enforced on the reply: only each candidate's first
  function call is kept.
* ``user`` and ``metadata`` only label a request and are ignored; OpenAI-wire extras that would change the output
  (``logit_bias``, ``prediction``, ``audio`` ...) raise ``UnsupportedParameter``; extras of other wires are ignored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import mimetypes
import re
import time
import uuid
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson

from ..errors import UnsupportedParameter
from ..messages import (
    JSON,
    AudioPart,
    ChatRequest,
    ChatResponse,
    Choice,
    Chunk,
    FilePart,
    Finish,
    FinishReason,
    ImagePart,
    LogprobsDelta,
    Message,
    Part,
    ReasoningDelta,
    ReasoningPart,
    Role,
    StreamEvent,
    StreamStart,
    TextDelta,
    TextPart,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    Usage,
    UsageUpdate,
)
from .translate import refuse_untranslatable

WIRE_GEMINI = "gemini.generate_content"
SKIP_SIGNATURE = "skip_thought_signature_validator"  # documented stand-in for a missing thought signature
_SIG_MARK = "__ts_"

_FILTERED = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "LANGUAGE",
                       "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION"})
_SCHEMA_KEYS = frozenset({"type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
                          "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
                          "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum"})
_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object"})
_FORMATS = {"STRING": {"enum", "date-time"}, "NUMBER": {"float", "double"}, "INTEGER": {"int32", "int64"}}
_BUDGETS = {"none": 0, "minimal": 1024, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768}
_LEVELS = {"none": "MINIMAL", "minimal": "MINIMAL", "low": "LOW", "medium": "MEDIUM", "high": "HIGH", "xhigh": "XHIGH"}
_AUDIO = {"mp3": "audio/mp3", "wav": "audio/wav", "flac": "audio/flac", "aac": "audio/aac", "ogg": "audio/ogg",
          "aiff": "audio/aiff", "pcm16": "audio/pcm"}
_DATA_URL = re.compile(r"^data:([^;,]+)?((?:;[^;,]*)*),(.*)$", re.S)
_GENERATION = re.compile(r"(?:^|/)gemini-(\d+)")


def _unsupported(param: str, what: str, provider: str) -> UnsupportedParameter:
    return UnsupportedParameter(f"{what} is not supported by provider {provider!r} (Gemini)", param=param)


def is_gemini3(model: str) -> bool:
    """Gemini 3 or later: thinking levels, and thought signatures required on function calls. Unknown names (aliases,
    Gemma) count as older, whose ways Gemini 3 still accepts (a thinking budget)."""
    m = _GENERATION.search(model)
    return m is not None and int(m.group(1)) >= 3


# --- tool call ids carry function-call thought signatures ----------------------------------------------------


def make_call_id(base: str, signature: str | None) -> str:
    if not signature:
        return base
    try:
        raw = base64.b64decode(signature, validate=False)
    except (binascii.Error, ValueError):
        return base
    return base + _SIG_MARK + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def split_call_id(call_id: str) -> tuple[str, str | None]:
    """The id Gemini gave (or we made) and the thought signature folded into it, if any."""
    base, mark, sig = call_id.partition(_SIG_MARK)
    if not mark or not sig:
        return call_id, None
    try:
        raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    except (binascii.Error, ValueError):
        return call_id, None
    return base, base64.b64encode(raw).decode()


class CallIds:
    """Stable ids for the function calls of one response: the same reply always gets the same ids."""

    def __init__(self, response_id: str) -> None:
        self.response_id = response_id

    def make(self, choice: int, index: int, name: str, given: Any, signature: Any) -> str:
        if isinstance(given, str) and given:
            base = given
        else:
            digest = hashlib.sha256(f"{self.response_id}/{choice}/{index}/{name}".encode()).hexdigest()
            base = "call_" + digest[:24]
        return make_call_id(base, signature if isinstance(signature, str) else None)


# --- schemas -------------------------------------------------------------------------------------------------


def gemini_schema(schema: dict[str, JSON], *, param: str, provider: str) -> dict[str, JSON]:
    """A JSON Schema reduced to the OpenAPI subset that Gemini's ``Schema`` accepts (see the module notes)."""
    defs = schema.get("$defs") or schema.get("definitions") or {}
    return _schema(schema, defs if isinstance(defs, dict) else {}, param, provider, ())


def _schema(node: Any, defs: dict[str, Any], param: str, provider: str, seen: tuple[str, ...]) -> dict[str, JSON]:
    if not isinstance(node, dict):
        return {}
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name in seen or not isinstance(defs.get(name), dict):
            raise UnsupportedParameter(f"the schema reference {ref!r} is recursive or unresolvable; provider "
                                       f"{provider!r} (Gemini) needs schemas it can inline", param=param)
        merged = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
        return _schema(merged, defs, param, provider, (*seen, name))

    def sub(n: Any) -> dict[str, JSON]:
        return _schema(n, defs, param, provider, seen)

    out: dict[str, JSON] = {}
    nullable = node.get("nullable") is True
    kind = node.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        nullable = nullable or len(kinds) < len(kind)
        if len(kinds) > 1:
            out["anyOf"] = [{"type": str(k).upper()} for k in kinds if k in _TYPES]
        kind = kinds[0] if len(kinds) == 1 else None
    if kind == "null":
        nullable, kind = True, None
    if isinstance(kind, str) and kind.lower() in _TYPES:
        out["type"] = kind.upper()
    for key, value in node.items():
        if key == "properties" and isinstance(value, dict):
            out["properties"] = {str(k): sub(v) for k, v in value.items()}
        elif key == "items":
            out["items"] = sub(value[0] if isinstance(value, list) and value else value)
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            options = [s for s in value if not (isinstance(s, dict) and s.get("type") == "null")]
            nullable = nullable or len(options) < len(value)
            if len(options) == 1:
                out.update({k: v for k, v in sub(options[0]).items() if k not in out})
            elif options:
                out["anyOf"] = [sub(s) for s in options]
        elif key == "allOf" and isinstance(value, list):
            for s in value:
                for k, v in sub(s).items():
                    if k == "properties" and isinstance(out.get("properties"), dict) and isinstance(v, dict):
                        out["properties"] = {**out["properties"], **v}
                    elif k == "required" and isinstance(out.get("required"), list) and isinstance(v, list):
                        out["required"] = [*out["required"], *(r for r in v if r not in out["required"])]
                    else:
                        out.setdefault(k, v)
        elif key in ("enum", "const"):
            values = value if key == "enum" and isinstance(value, list) else [value]
            nullable = nullable or None in values
            out["enum"] = [v if isinstance(v, str) else orjson.dumps(v).decode() for v in values if v is not None]
        elif key == "format":
            if value in _FORMATS.get(str(out.get("type")), ()):
                out["format"] = value
        elif key == "examples" and isinstance(value, list) and value and "example" not in node:
            out["example"] = value[0]
        elif key in _SCHEMA_KEYS and key not in ("type", "nullable") and key not in out:
            out[key] = value
    if isinstance(out.get("required"), list) and isinstance(out.get("properties"), dict):
        out["required"] = [r for r in out["required"] if r in out["properties"]]
    if nullable:
        out["nullable"] = True
    return out


# --- request -------------------------------------------------------------------------------------------------


def _sniff_image(data: str) -> str:
    try:
        head = base64.b64decode(data[:24], validate=False)
    except (binascii.Error, ValueError):
        head = b""
    for magic, mime in ((b"\x89PNG", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"),
                        (b"RIFF", "image/webp")):
        if head.startswith(magic):
            return mime
    return "image/png"


def _inline(mime: str, data: str) -> dict[str, JSON]:
    return {"inlineData": {"mimeType": mime, "data": data}}


def _uri_part(url: str, media_type: str | None, provider: str) -> dict[str, JSON]:
    m = _DATA_URL.match(url)
    if m:
        mime = m.group(1) or "application/octet-stream"
        payload = m.group(3)
        data = payload if ";base64" in m.group(2) else base64.b64encode(unquote_to_bytes(payload)).decode()
        return _inline(mime, data)
    if not url.startswith(("gs://", "https://generativelanguage.googleapis.com/")):
        raise UnsupportedParameter(
            f"provider {provider!r} (Gemini) cannot fetch media from {url[:60]!r}; send the image or file as "
            "base64 data, or as a gs:// or Gemini Files API URI", param="messages")
    fd: dict[str, JSON] = {"fileUri": url}
    mime = media_type or mimetypes.guess_type(url)[0]
    if mime:
        fd["mimeType"] = mime
    return {"fileData": fd}


def _media(p: ImagePart | FilePart | AudioPart, provider: str) -> dict[str, JSON]:
    if isinstance(p, AudioPart):
        return _inline(_AUDIO.get(p.format, f"audio/{p.format}"), p.data)
    if p.data is not None:
        default = _sniff_image(p.data) if isinstance(p, ImagePart) else "application/pdf"
        return _inline(p.media_type or default, p.data)
    if p.url is not None:
        return _uri_part(p.url, p.media_type, provider)
    file_id = p.file_id if isinstance(p, FilePart) else None
    if file_id and file_id.startswith("files/"):
        return _uri_part(f"https://generativelanguage.googleapis.com/v1beta/{file_id}", p.media_type, provider)
    if file_id:
        return _uri_part(file_id, p.media_type, provider)
    raise UnsupportedParameter("a content part has neither data nor a URL", param="messages")


def _args(p: ToolCallPart, provider: str) -> dict[str, JSON]:
    text = p.arguments.strip()
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise UnsupportedParameter(f"the arguments of tool call {split_call_id(p.id)[0]!r} are not a JSON object; "
                                   f"provider {provider!r} (Gemini) needs one", param="messages")
    return value


def _function_response(r: ToolResultPart, name: str) -> dict[str, JSON]:
    text = "".join(c.text for c in r.content if isinstance(c, TextPart))
    response: dict[str, JSON] = {"error" if r.is_error else "content": text}
    if not r.is_error and text.lstrip().startswith("{"):
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            response = parsed
    return {"functionResponse": {"name": name, "response": response}}


def _model_parts(m: Message, names: dict[str, str], provider: str, strict: bool) -> list[dict[str, JSON]]:
    out: list[dict[str, JSON]] = []
    pending: str | None = None  # a signature that belongs on the next part
    for p in m.parts:
        part: dict[str, JSON]
        if isinstance(p, ReasoningPart):
            if p.signature and p.text:
                out.append({"text": p.text, "thought": True, "thoughtSignature": p.signature})
            elif p.signature:
                pending = p.signature
            continue
        if isinstance(p, TextPart):
            part = {"text": p.text}
        elif isinstance(p, ToolCallPart):
            names[p.id] = p.name
            base, sig = split_call_id(p.id)
            names.setdefault(base, p.name)
            part = {"functionCall": {"name": p.name, "args": _args(p, provider)}}
            if sig:
                part["thoughtSignature"] = sig
        elif isinstance(p, ImagePart | FilePart | AudioPart):
            part = _media(p, provider)
        else:
            continue
        if pending and "thoughtSignature" not in part:
            part["thoughtSignature"] = pending
        pending = None
        out.append(part)
    calls = [part for part in out if "functionCall" in part]
    if strict and calls and not any("thoughtSignature" in c for c in calls):
        calls[0]["thoughtSignature"] = SKIP_SIGNATURE
    return out


def _user_parts(m: Message, names: dict[str, str], provider: str) -> list[dict[str, JSON]]:
    out: list[dict[str, JSON]] = []
    for p in m.parts:
        if isinstance(p, TextPart):
            out.append({"text": p.text})
        elif isinstance(p, ImagePart | FilePart | AudioPart):
            out.append(_media(p, provider))
        elif isinstance(p, ToolResultPart):
            # Gemini names the function, not the call; an unknown id is taken for a name (OpenAI's legacy role)
            name = names.get(p.tool_call_id) or names.get(split_call_id(p.tool_call_id)[0]) or p.tool_call_id
            out.append(_function_response(p, name))
            out.extend(_media(c, provider) for c in p.content if isinstance(c, ImagePart | FilePart | AudioPart))
    return out


def render_contents(messages: list[Message], model: str, provider: str) -> tuple[list[JSON], list[JSON]]:
    """``(systemInstruction parts, contents)``. Consecutive turns of one role merge into one Content."""
    names: dict[str, str] = {}
    system: list[JSON] = []
    contents: list[dict[str, Any]] = []
    strict = is_gemini3(model)
    for m in messages:
        if m.role is Role.SYSTEM:
            system.extend({"text": p.text} for p in m.parts if isinstance(p, TextPart))
            continue
        if m.role is Role.ASSISTANT:
            role, parts = "model", _model_parts(m, names, provider, strict)
        else:
            role, parts = "user", _user_parts(m, names, provider)
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return system, list(contents)


def _declaration(t: Tool, provider: str) -> dict[str, JSON]:
    decl: dict[str, JSON] = {"name": t.name}
    if t.description:
        decl["description"] = t.description
    if t.parameters:
        params = gemini_schema(t.parameters, param="tools", provider=provider)
        if params.get("properties") or params.get("type") not in (None, "OBJECT"):
            decl["parameters"] = params
    return decl


def _thinking(req: ChatRequest, model: str, provider: str) -> dict[str, JSON] | None:
    if req.reasoning_budget is not None:
        return {"thinkingBudget": req.reasoning_budget, "includeThoughts": req.reasoning_budget != 0}
    effort = req.reasoning_effort
    if effort is None:
        return None
    if effort not in _BUDGETS:
        raise _unsupported("reasoning_effort", f"reasoning_effort {effort!r}", provider)
    if is_gemini3(model):
        return {"thinkingLevel": _LEVELS[effort], "includeThoughts": effort != "none"}
    return {"thinkingBudget": _BUDGETS[effort], "includeThoughts": effort != "none"}


def _generation_config(req: ChatRequest, model: str, provider: str) -> dict[str, JSON]:
    g: dict[str, JSON] = {}
    for key, value in (("temperature", req.temperature), ("topP", req.top_p), ("topK", req.top_k),
                       ("maxOutputTokens", req.max_tokens), ("candidateCount", req.n), ("seed", req.seed),
                       ("presencePenalty", req.presence_penalty), ("frequencyPenalty", req.frequency_penalty)):
        if value is not None:
            g[key] = value
    if req.stop:
        g["stopSequences"] = list(req.stop)
    if req.logprobs:
        g["responseLogprobs"] = True
        if req.top_logprobs is not None:
            g["logprobs"] = req.top_logprobs
    rf = req.response_format
    if rf is not None and rf.type != "text":
        g["responseMimeType"] = "application/json"
        if rf.type == "json_schema" and rf.schema is not None:
            g["responseJsonSchema"] = {k: v for k, v in rf.schema.items() if k != "$schema"}
    thinking = _thinking(req, model, provider)
    if thinking is not None:
        g["thinkingConfig"] = thinking
    return g


def render_request(req: ChatRequest, model: str, *, provider: str) -> dict[str, JSON]:
    """The ``generateContent`` body (the model goes in the URL)."""
    refuse_untranslatable(req, provider, WIRE_GEMINI)
    system, contents = render_contents(req.messages, model, provider)
    body: dict[str, JSON] = {}
    if contents:
        body["contents"] = contents
        if system:
            body["systemInstruction"] = {"parts": system}
    else:  # only system messages: Gemini needs contents, so they become the user's turn
        body["contents"] = [{"role": "user", "parts": system}]
    if req.tools:
        body["tools"] = [{"functionDeclarations": [_declaration(t, provider) for t in req.tools]}]
        tc = req.tool_choice
        if tc is not None:
            mode = {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}[tc.mode]
            fcc: dict[str, JSON] = {"mode": mode}
            if tc.mode == "tool" and tc.name:
                fcc["allowedFunctionNames"] = [tc.name]
            body["toolConfig"] = {"functionCallingConfig": fcc}
    gen = _generation_config(req, model, provider)
    if gen:
        body["generationConfig"] = gen
    return body


# --- replies -------------------------------------------------------------------------------------------------


def parse_usage(u: Any) -> Usage | None:
    if not isinstance(u, dict) or not u:
        return None
    thoughts = int(u.get("thoughtsTokenCount") or 0)
    return Usage(
        input_tokens=int(u.get("promptTokenCount") or 0) + int(u.get("toolUsePromptTokenCount") or 0),
        output_tokens=int(u.get("candidatesTokenCount") or 0) + thoughts,
        cached_tokens=int(u.get("cachedContentTokenCount") or 0),
        reasoning_tokens=thoughts,
    )


def finish_reason(value: Any, has_calls: bool) -> FinishReason | None:
    if not value:
        return None
    if value == "MAX_TOKENS":
        return FinishReason.LENGTH
    if value in _FILTERED:
        return FinishReason.CONTENT_FILTER
    return FinishReason.TOOL_CALLS if has_calls else FinishReason.STOP


def _lp(token: Any, logprob: Any) -> dict[str, JSON]:
    tok = str(token or "")
    return {"token": tok, "logprob": float(logprob or 0.0), "bytes": list(tok.encode())}


def parse_logprobs(result: Any) -> JSON:
    """Gemini's ``logprobsResult`` in OpenAI's ``{"content": [...]}`` shape, which the neutral model carries."""
    if not isinstance(result, dict):
        return None
    tops = result.get("topCandidates") or []
    content: list[JSON] = []
    for i, chosen in enumerate(result.get("chosenCandidates") or []):
        alts = (tops[i].get("candidates") if i < len(tops) and isinstance(tops[i], dict) else None) or []
        entry = _lp(chosen.get("token"), chosen.get("logProbability"))
        entry["top_logprobs"] = [_lp(a.get("token"), a.get("logProbability")) for a in alts]
        content.append(entry)
    return {"content": content, "refusal": None}


def _parts(raw: Any, choice: int, ids: CallIds, single_call: bool, calls_so_far: int = 0) -> list[Part]:
    out: list[Part] = []
    calls = calls_so_far
    for p in raw if isinstance(raw, list) else []:
        if not isinstance(p, dict):
            continue
        sig = p.get("thoughtSignature") if isinstance(p.get("thoughtSignature"), str) else None
        fc = p.get("functionCall")
        if isinstance(fc, dict):
            if single_call and calls >= 1:
                continue
            name = str(fc.get("name") or "")
            call_id = ids.make(choice, calls, name, fc.get("id"), sig)
            out.append(ToolCallPart(id=call_id, name=name, arguments=orjson.dumps(fc.get("args") or {}).decode()))
            calls += 1
        elif isinstance(p.get("text"), str):
            if p.get("thought"):
                out.append(ReasoningPart(text=p["text"], signature=sig))
                continue
            if sig:
                out.append(ReasoningPart(signature=sig))
            out.append(TextPart(p["text"]))
        elif isinstance(p.get("inlineData"), dict):
            blob = p["inlineData"]
            mime, data = str(blob.get("mimeType") or ""), str(blob.get("data") or "")
            out.append(ImagePart(data=data, media_type=mime) if mime.startswith("image/")
                       else FilePart(data=data, media_type=mime or None))
        elif sig:
            out.append(ReasoningPart(signature=sig))
    return out


def _merge_text(parts: list[Part]) -> list[Part]:
    out: list[Part] = []
    for p in parts:
        if isinstance(p, TextPart) and out and isinstance(out[-1], TextPart):
            out[-1] = TextPart(out[-1].text + p.text)
        else:
            out.append(p)
    return out


def parse_response(data: dict[str, Any], model: str, *, single_call: bool = False) -> ChatResponse:
    """A ``GenerateContentResponse``. A blocked prompt (no candidates) is a reply that ended in CONTENT_FILTER."""
    rid = str(data.get("responseId") or "gen-" + uuid.uuid4().hex)
    ids = CallIds(rid)
    choices: list[Choice] = []
    for c in data.get("candidates") or []:
        if not isinstance(c, dict):
            continue
        idx = int(c.get("index") or 0)  # proto3 JSON leaves out a zero index
        parts = _merge_text(_parts((c.get("content") or {}).get("parts"), idx, ids, single_call))
        has_calls = any(isinstance(p, ToolCallPart) for p in parts)
        choices.append(Choice(index=idx, message=Message(Role.ASSISTANT, parts),
                              finish_reason=finish_reason(c.get("finishReason"), has_calls) or FinishReason.STOP,
                              logprobs=parse_logprobs(c.get("logprobsResult"))))
    if not choices:
        choices.append(Choice(index=0, message=Message(Role.ASSISTANT, []), finish_reason=FinishReason.CONTENT_FILTER))
    return ChatResponse(id=rid, model=str(data.get("modelVersion") or model), created=int(time.time()),
                        choices=choices, usage=parse_usage(data.get("usageMetadata")), wire=WIRE_GEMINI, raw=data)


def prompt_blocked(data: dict[str, Any]) -> bool:
    fb = data.get("promptFeedback")
    return not data.get("candidates") and isinstance(fb, dict) and bool(fb.get("blockReason"))


class StreamParser:
    """Turns the ``GenerateContentResponse`` frames of one ``streamGenerateContent`` call into chunks."""

    def __init__(self, model: str, *, single_call: bool = False) -> None:
        self.model = model
        self.single_call = single_call
        self.ids: CallIds | None = None
        self.calls: dict[int, int] = {}  # tool calls so far, per candidate
        self.finished = False

    def feed(self, data: dict[str, Any]) -> Chunk:
        events: list[StreamEvent] = []
        if self.ids is None:
            rid = str(data.get("responseId") or "gen-" + uuid.uuid4().hex)
            self.ids = CallIds(rid)
            events.append(StreamStart(id=rid, model=str(data.get("modelVersion") or self.model),
                                      created=int(time.time())))
        for c in data.get("candidates") or []:
            if not isinstance(c, dict):
                continue
            idx = int(c.get("index") or 0)  # proto3 JSON leaves out a zero index
            done = self.calls.get(idx, 0)
            for p in _parts((c.get("content") or {}).get("parts"), idx, self.ids, self.single_call, done):
                if isinstance(p, ToolCallPart):
                    k = self.calls.get(idx, 0)
                    events.append(ToolCallStart(index=k, id=p.id, name=p.name, choice=idx))
                    events.append(ToolCallDelta(index=k, arguments=p.arguments, choice=idx))
                    self.calls[idx] = k + 1
                elif isinstance(p, ReasoningPart):
                    events.append(ReasoningDelta(text=p.text, signature=p.signature, choice=idx))
                elif isinstance(p, TextPart) and p.text:
                    events.append(TextDelta(p.text, choice=idx))
            lp = parse_logprobs(c.get("logprobsResult"))
            if lp is not None:
                events.append(LogprobsDelta(lp, choice=idx))
            fr = finish_reason(c.get("finishReason"), self.calls.get(idx, 0) > 0)
            if fr is not None:
                events.append(Finish(fr, choice=idx))
                self.finished = True
        if prompt_blocked(data):
            events.append(Finish(FinishReason.CONTENT_FILTER, choice=0))
            self.finished = True
        usage = parse_usage(data.get("usageMetadata"))
        if usage is not None:
            events.append(UsageUpdate(usage))
        return Chunk(events, wire=WIRE_GEMINI, raw=data)
