"""The data plane's OpenAPI 3.1 document, served at ``GET /v1/openapi.json`` (no key needed).

It describes what the gateway accepts and answers, not what the upstream APIs accept: the request schemas follow
the protocol adapters' readers (``protocols.openai_chat``, ``openai_embeddings``, ``anthropic_messages``) field
by field, so an optional field is nullable (the readers treat ``null`` as absent) and unknown top-level fields are
allowed (they are passed through to a provider of the same wire format). Tests keep it true: every field the
adapters model is documented (``tests/test_openapi_v1.py``), and the fuzzer (``tests/test_fuzz_contract.py``)
sends what the document allows and what it forbids, and checks every reply against it.

The request bodies are plain JSON Schema written here because the adapters read bodies by hand (for speed and for
OpenAI-style error messages), not through models that a schema could be generated from.
"""

from __future__ import annotations

from typing import Any

from ..bounds import INT_MAX, INT_MIN, MAX_METADATA_KEY, MAX_METADATA_PAIRS, MAX_METADATA_VALUE
from ..governance.feedback import BAD_LABELS, GOOD_LABELS
from . import docs_routes, openapi_conversations, openapi_responses

Schema = dict[str, Any]

_REF = "#/components/schemas/"


def _ref(name: str) -> Schema:
    return {"$ref": _REF + name}


def _null(schema: Schema) -> Schema:
    """``schema`` or null (an optional field that the readers treat as absent when null)."""
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(required: list[str], props: dict[str, Schema], *, closed: bool = False, **extra: Any) -> Schema:
    out: Schema = {"type": "object", "properties": props, **extra}
    if required:
        out["required"] = required
    if closed:
        out["additionalProperties"] = False
    return out


def _const(value: str) -> Schema:
    return {"type": "string", "const": value}


STRING: Schema = {"type": "string"}
OPT_STRING = _null(STRING)
OPT_BOOL = _null({"type": "boolean"})
OPT_OBJECT = _null({"type": "object"})


def _num(minimum: float, maximum: float) -> Schema:
    return _null({"type": "number", "minimum": minimum, "maximum": maximum})


# JSON integers that the body decoder (orjson) reads as integers; larger ones become floats and are refused


def _int(minimum: int = INT_MIN, maximum: int = INT_MAX) -> Schema:
    return _null({"type": "integer", "minimum": minimum, "maximum": maximum})


def _sse(what: str) -> dict[str, Any]:
    """A text/event-stream body: each event's ``data`` is one JSON object (or OpenAI's closing ``[DONE]``)."""
    return {"text/event-stream": {"schema": _obj(["data"], {"event": STRING, "data": STRING, "id": STRING},
                                                 description=what)}}


# --- OpenAI chat completions (protocols/openai_chat.py) ------------------------------------------------------

_TEXT_PART = _obj(["type", "text"], {"type": _const("text"), "text": STRING})
_REFUSAL_PART = _obj(["type", "refusal"], {"type": _const("refusal"), "refusal": STRING})
_IMAGE_PART = _obj(["type", "image_url"], {"type": _const("image_url"), "image_url": _obj(
    ["url"], {"url": {"type": "string", "description": "an https URL or a data: URL with base64 data"},
              "detail": OPT_STRING})})
_AUDIO_PART = _obj(["type", "input_audio"], {"type": _const("input_audio"), "input_audio": _obj(
    ["data", "format"], {"data": STRING, "format": STRING})})
_FILE_PART = _obj(["type", "file"], {"type": _const("file"), "file": _obj(
    [], {"file_data": OPT_STRING, "file_id": OPT_STRING, "filename": OPT_STRING})})


def _content(*parts: Schema) -> Schema:
    return {"anyOf": [STRING, {"type": "array", "items": parts[0] if len(parts) == 1 else {"anyOf": list(parts)}},
                      {"type": "null"}]}


_TOOL_CALL = _obj(["id", "function"], {
    "id": STRING, "type": {"description": "not read (OpenAI's is 'function')"},
    "function": _obj(["name"], {"name": STRING, "arguments": OPT_STRING}),
})

CHAT_MESSAGE: Schema = {"oneOf": [
    _obj(["role"], {"role": {"type": "string", "enum": ["system", "developer"]}, "content": _content(_TEXT_PART),
                    "name": OPT_STRING}, title="SystemMessage"),
    _obj(["role", "content"], {"role": _const("user"),
                               "content": _content(_TEXT_PART, _IMAGE_PART, _AUDIO_PART, _FILE_PART),
                               "name": OPT_STRING}, title="UserMessage"),
    _obj(["role"], {"role": _const("assistant"), "content": _content(_TEXT_PART, _REFUSAL_PART),
                    "reasoning_content": {"description": "used when it is a string (DeepSeek-style reasoning)"},
                    "tool_calls": _null({"type": "array", "items": _TOOL_CALL}),
                    "name": OPT_STRING}, title="AssistantMessage"),
    _obj(["role", "tool_call_id"], {"role": _const("tool"), "tool_call_id": STRING, "content": _content(_TEXT_PART)},
         title="ToolMessage"),
    _obj(["role", "name"], {"role": _const("function"), "name": STRING, "content": _content(_TEXT_PART)},
         title="FunctionMessage", deprecated=True),
]}

CHAT_REQUEST: Schema = _obj(["model", "messages"], {
    "model": {"type": "string", "description": "a deployment or route name (GET /v1/models lists them)"},
    "messages": {"type": "array", "minItems": 1, "items": _ref("ChatMessage")},
    "stream": OPT_BOOL,
    "stream_options": _null(_obj([], {"include_usage": {"description": "truthy: end the stream with a usage chunk"}})),
    "max_tokens": _int(1),
    "max_completion_tokens": _int(1),
    "temperature": _num(0, 2),
    "top_p": _num(0, 1),
    "top_k": _int(0),
    "n": _int(1, 128),
    "stop": {"anyOf": [STRING, {"type": "array", "items": STRING}, {"type": "null"}]},
    "seed": _int(),
    "presence_penalty": _num(-2, 2),
    "frequency_penalty": _num(-2, 2),
    "logprobs": OPT_BOOL,
    "top_logprobs": _int(0, 20),
    "tools": _null({"type": "array", "items": _obj(["type", "function"], {
        "type": _const("function"),
        "function": _obj(["name"], {"name": STRING, "description": OPT_STRING, "parameters": OPT_OBJECT,
                                    "strict": OPT_BOOL})})}),
    "tool_choice": {"anyOf": [{"type": "string", "enum": ["auto", "none", "required"]},
                              _obj(["function"], {"type": {"description": "not read"},
                                                  "function": _obj(["name"], {"name": STRING})}),
                              {"type": "null"}]},
    "parallel_tool_calls": OPT_BOOL,
    "response_format": {"anyOf": [
        _obj(["type"], {"type": {"type": "string", "enum": ["text", "json_object"]}}),
        _obj(["type", "json_schema"], {"type": _const("json_schema"), "json_schema": _obj(["name"], {
            "name": STRING, "schema": OPT_OBJECT, "strict": OPT_BOOL, "description": OPT_STRING})}),
        {"type": "null"}]},
    "reasoning_effort": OPT_STRING,
    "user": OPT_STRING,
    "metadata": _null({"type": "object", "maxProperties": MAX_METADATA_PAIRS,
                       "propertyNames": {"maxLength": MAX_METADATA_KEY},
                       "additionalProperties": {"type": ["string", "null"], "maxLength": MAX_METADATA_VALUE}}),
}, description="Chat Completions (https://platform.openai.com/docs/api-reference/chat/create). Fields not listed "
               "here are passed unchanged to providers that speak OpenAI's format.")

_USAGE = _obj(["prompt_tokens", "completion_tokens", "total_tokens"], {
    "prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"},
    "total_tokens": {"type": "integer"}})

CHAT_COMPLETION: Schema = _obj(["id", "object", "created", "model", "choices"], {
    "id": STRING, "object": _const("chat.completion"), "created": {"type": "integer"}, "model": STRING,
    "choices": {"type": "array", "items": _obj(["index", "message", "finish_reason"], {
        "index": {"type": "integer"},
        "message": _obj(["role"], {"role": _const("assistant"), "content": OPT_STRING, "refusal": OPT_STRING,
                                   "reasoning_content": OPT_STRING,
                                   "tool_calls": {"type": "array", "items": _obj(["id", "type", "function"], {
                                       "id": STRING, "type": _const("function"),
                                       "function": _obj(["name", "arguments"], {"name": STRING,
                                                                                "arguments": STRING})})}}),
        "finish_reason": _null({"type": "string", "enum": ["stop", "length", "tool_calls", "content_filter",
                                                           "function_call"]}),
        "logprobs": {}})},
    "usage": _USAGE,
    "system_fingerprint": OPT_STRING,
})

# --- OpenAI embeddings (protocols/openai_embeddings.py) -------------------------------------------------------

_TOKENS = {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": INT_MIN, "maximum": INT_MAX}}

EMBEDDING_REQUEST: Schema = _obj(["model", "input"], {
    "model": STRING,
    "input": {"anyOf": [
        {"type": "string", "minLength": 1},
        _TOKENS,
        {"type": "array", "minItems": 1, "items": {"anyOf": [{"type": "string", "minLength": 1}, _TOKENS]}},
    ], "description": "a string, an array of strings, an array of token ids, or an array of token-id arrays"},
    "dimensions": _int(1),
    "encoding_format": _null({"type": "string", "enum": ["float", "base64"]}),
    "user": OPT_STRING,
}, description="Embeddings (https://platform.openai.com/docs/api-reference/embeddings/create).")

EMBEDDING_LIST: Schema = _obj(["object", "data", "model", "usage"], {
    "object": _const("list"),
    "data": {"type": "array", "items": _obj(["object", "index", "embedding"], {
        "object": _const("embedding"), "index": {"type": "integer"},
        "embedding": {"anyOf": [{"type": "array", "items": {"type": "number"}}, STRING]}})},
    "model": STRING,
    "usage": _obj(["prompt_tokens", "total_tokens"], {"prompt_tokens": {"type": "integer"},
                                                      "total_tokens": {"type": "integer"}}),
})

MODEL: Schema = _obj(["id", "object", "created", "owned_by"], {
    "id": STRING, "object": _const("model"), "created": {"type": "integer"}, "owned_by": STRING})
MODEL_LIST: Schema = _obj(["object", "data"], {"object": _const("list"),
                                               "data": {"type": "array", "items": _ref("Model")}})

OPENAI_ERROR: Schema = _obj(["error"], {"error": _obj(["message", "type", "param", "code"], {
    "message": STRING, "type": STRING, "param": OPT_STRING, "code": OPT_STRING,
    "provider": STRING, "deployment": STRING, "upstream_status": {"type": "integer"}})},
    description="An OpenAI error object; `param` names the offending field.")

# --- Anthropic messages (protocols/anthropic_messages.py) -----------------------------------------------------

KNOWN_BLOCKS = ["text", "image", "document", "tool_result", "tool_use", "thinking", "redacted_thinking"]

# kept in the part's meta as they are, for an Anthropic upstream to read
_BLOCK_META: dict[str, Schema] = {"cache_control": {}, "citations": {}, "title": {}, "context": {}}


def _block(typ: str, required: list[str], props: dict[str, Schema]) -> Schema:
    return _obj(["type", *required], {**_BLOCK_META, "type": _const(typ), **props}, title=f"{typ} block")


_A_TEXT = _block("text", ["text"], {"text": STRING})
_A_IMAGE = _block("image", ["source"], {"source": {"oneOf": [
    _obj(["type", "data", "media_type"], {"type": _const("base64"), "data": STRING, "media_type": STRING}),
    _obj(["type", "url"], {"type": _const("url"), "url": STRING}),
    _obj(["type", "file_id"], {"type": _const("file"), "file_id": STRING}),
]}})
_A_DOCUMENT = _block("document", ["source"], {"title": OPT_STRING, "source": {"oneOf": [
    _obj(["type", "data"], {"type": _const("base64"), "data": STRING, "media_type": OPT_STRING}),
    _obj(["type", "data"], {"type": _const("text"), "data": STRING, "media_type": OPT_STRING}),
    _obj(["type", "url"], {"type": _const("url"), "url": STRING}),
    _obj(["type", "file_id"], {"type": _const("file"), "file_id": STRING}),
    _obj(["type", "content"], {"type": _const("content"), "content": {"anyOf": [STRING, {
        "type": "array", "items": {"anyOf": [_A_TEXT, _A_IMAGE, _ref("OpaqueBlock")]}}]}}),
]}})
_A_TOOL_RESULT = _block("tool_result", ["tool_use_id"], {
    "tool_use_id": STRING, "is_error": OPT_BOOL,
    "content": {"anyOf": [STRING, {"type": "array", "items": {"anyOf": [_A_TEXT, _A_IMAGE, _A_DOCUMENT,
                                                                          _ref("OpaqueBlock")]}},
                          {"type": "null"}]}})
_A_TOOL_USE = _block("tool_use", ["id", "name", "input"], {"id": STRING, "name": STRING, "input": {"type": "object"}})
_A_THINKING = _block("thinking", ["thinking"], {"thinking": STRING, "signature": OPT_STRING})
_A_REDACTED = _block("redacted_thinking", ["data"], {"data": STRING})

OPAQUE_BLOCK: Schema = _obj(["type"], {"type": {"type": "string", "not": {"enum": KNOWN_BLOCKS}}},
                            description="A block type the gateway does not model (a server tool's, say): kept "
                                        "whole for an Anthropic upstream; another provider refuses it.")

ANTHROPIC_MESSAGE: Schema = {"oneOf": [
    _obj(["role", "content"], {"role": _const("user"), "content": {"anyOf": [STRING, {"type": "array", "items": {
        "anyOf": [_A_TEXT, _A_IMAGE, _A_DOCUMENT, _A_TOOL_RESULT, _ref("OpaqueBlock")]}}]}}),
    _obj(["role", "content"], {"role": _const("assistant"), "content": {"anyOf": [STRING, {
        "type": "array", "items": {"anyOf": [_A_TEXT, _A_TOOL_USE, _A_THINKING, _A_REDACTED,
                                             _ref("OpaqueBlock")]}}]}}),
]}

_A_TOOL = {"anyOf": [
    _obj(["name", "input_schema"], {"type": _null(_const("custom")), "name": STRING, "description": OPT_STRING,
                                    "input_schema": {"type": "object"}, "strict": OPT_BOOL,
                                    "cache_control": {}}, title="custom tool"),
    _obj(["type", "name"], {"type": {"type": "string", "not": {"const": "custom"}}, "name": STRING},
         title="server tool", description="web search, code execution, ...: for an Anthropic upstream only"),
]}

_A_TOOL_CHOICE = _null({"oneOf": [
    _obj(["type"], {"type": {"type": "string", "enum": ["auto", "any"]}, "disable_parallel_tool_use": OPT_BOOL}),
    _obj(["type", "name"], {"type": _const("tool"), "name": STRING, "disable_parallel_tool_use": OPT_BOOL}),
    _obj(["type"], {"type": _const("none"), "disable_parallel_tool_use": OPT_BOOL}),
]})

_A_THINKING_CONFIG = _null({"oneOf": [
    _obj(["type", "budget_tokens"], {"type": _const("enabled"),
                                     "budget_tokens": {"type": "integer", "minimum": 1, "maximum": INT_MAX}}),
    _obj(["type"], {"type": {"type": "string", "not": {"const": "enabled"}}}),
]})


def _messages_request(count_only: bool) -> Schema:
    props: dict[str, Schema] = {
        "model": STRING,
        "messages": {"type": "array", "minItems": 1, "items": _ref("AnthropicMessage")},
        "system": {"anyOf": [STRING, {"type": "array", "items": _A_TEXT}, {"type": "null"}]},
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": INT_MAX} if not count_only else _int(1),
        "metadata": _null(_obj([], {"user_id": OPT_STRING})),
        "stop_sequences": _null({"type": "array", "items": STRING}),
        "stream": OPT_BOOL,
        "temperature": _num(0, 1),
        "top_p": _num(0, 1),
        "top_k": _int(0),
        "tools": _null({"type": "array", "items": _A_TOOL}),
        "tool_choice": _A_TOOL_CHOICE,
        "thinking": _A_THINKING_CONFIG,
        "output_config": _null(_obj([], {"effort": OPT_STRING, "format": _null(_obj(
            ["type", "schema"], {"type": _const("json_schema"), "schema": {"type": "object"}}))})),
    }
    required = ["model", "messages"] if count_only else ["model", "messages", "max_tokens"]
    return _obj(required, props, description="Messages (https://docs.anthropic.com/en/api/messages). Fields not "
                                             "listed here are passed unchanged to an Anthropic upstream.")


_A_USAGE = _obj(["input_tokens", "output_tokens"], {
    "input_tokens": {"type": "integer"}, "output_tokens": {"type": "integer"},
    "cache_creation_input_tokens": _int(), "cache_read_input_tokens": _int()})

ANTHROPIC_REPLY: Schema = _obj(["id", "type", "role", "model", "content", "stop_reason", "usage"], {
    "id": STRING, "type": _const("message"), "role": _const("assistant"), "model": STRING,
    "content": {"type": "array", "items": _obj(["type"], {"type": STRING})},
    "stop_reason": _null({"type": "string", "enum": ["end_turn", "max_tokens", "stop_sequence", "tool_use",
                                                     "pause_turn", "refusal"]}),
    "stop_sequence": OPT_STRING,
    "usage": _A_USAGE,
})

ANTHROPIC_ERROR: Schema = _obj(["type", "error"], {
    "type": _const("error"), "error": _obj(["type", "message"], {"type": STRING, "message": STRING}),
    "request_id": STRING}, description="An Anthropic error object; the message names the offending field.")

# --- health --------------------------------------------------------------------------------------------------

LIVE: Schema = _obj(["status", "pid"], {"status": _const("ok"), "pid": {"type": "integer"}})
READY: Schema = _obj(["status", "checks", "deployments", "routes"], {
    "status": {"type": "string", "enum": ["ready", "not_ready"]},
    "checks": {"type": "object", "additionalProperties": {"type": "boolean"}},
    "deployments": {"type": "integer"}, "routes": {"type": "integer"}})

# --- the document --------------------------------------------------------------------------------------------

_STATUS_TEXT = {
    200: "OK",
    400: "Invalid request: a malformed, empty or oversized body, a missing or wrongly typed field (the error names "
         "it), or a parameter the provider cannot honour",
    401: "Missing, wrong, revoked or expired key",
    403: "The key may not use that model",
    404: "No such model (or not visible to the key)",
    429: "A rate limit or budget (Retry-After says when to come back), or the upstream's own 429",
    502: "The upstream failed (a 5xx, a broken connection, a malformed reply)",
    503: "The governance store is unavailable",
    504: "The upstream, or the caller's x-switchyard-timeout, timed out",
}
_CALL_ERRORS = (400, 401, 403, 404, 429, 502, 503, 504)
_READ_ERRORS = (401, 429, 503)

_REQUEST_ID = {"x-request-id": {"description": "the caller's x-request-id, else the gateway's own id",
                                "required": True, "schema": STRING}}
_TIMEOUT = {"name": "x-switchyard-timeout", "in": "header", "required": False,
            "description": "seconds the caller will wait, at most server.request_timeout",
            "schema": {"type": "number", "exclusiveMinimum": 0}}
_ANTHROPIC_HEADERS = [
    {"name": "anthropic-version", "in": "header", "required": False, "schema": STRING,
     "description": "accepted and optional (any value)"},
    {"name": "anthropic-beta", "in": "header", "required": False, "schema": STRING,
     "description": "forwarded to an Anthropic upstream"},
]


def _json(schema_name: str) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(schema_name)}}


def _responses(ok: dict[str, Any], errors: tuple[int, ...], error_schema: str) -> dict[str, Any]:
    out: dict[str, Any] = {"200": {"description": "OK", "headers": _REQUEST_ID, "content": ok}}
    for status in errors:
        out[str(status)] = {"description": _STATUS_TEXT[status], "headers": _REQUEST_ID,
                            "content": _json(error_schema)}
    return out


def _operation(op_id: str, summary: str, *, body: str | None, ok: dict[str, Any], errors: tuple[int, ...],
               anthropic: bool = False, tag: str = "openai", params: list[dict[str, Any]] | None = None,
               ) -> dict[str, Any]:
    entry: dict[str, Any] = {"operationId": op_id, "summary": summary, "tags": [tag],
                             "responses": _responses(ok, errors, "AnthropicError" if anthropic else "OpenAIError")}
    parameters = list(params or [])
    if body is not None:
        parameters.append(_TIMEOUT)
        entry["requestBody"] = {"required": True, "content": _json(body)}
    if anthropic:
        parameters += _ANTHROPIC_HEADERS
        entry["security"] = [{"apiKey": []}, {"bearer": []}]
    if parameters:
        entry["parameters"] = parameters
    return entry


def _chat(op_id: str) -> dict[str, Any]:
    ok = {**_json("ChatCompletion"), **_sse("with stream: chat.completion.chunk events, then `data: [DONE]`")}
    return {"post": _operation(op_id, "Create a chat completion", body="ChatCompletionRequest", ok=ok,
                               errors=_CALL_ERRORS)}


def _embeddings(op_id: str) -> dict[str, Any]:
    return {"post": _operation(op_id, "Create embeddings", body="EmbeddingRequest", ok=_json("EmbeddingList"),
                               errors=_CALL_ERRORS)}


def _messages(op_id: str) -> dict[str, Any]:
    stream = _sse("with stream: Anthropic's events, message_start to message_stop")
    return {"post": _operation(op_id, "Create a message", body="MessageRequest", ok={**_json("Message"), **stream},
                               errors=_CALL_ERRORS, anthropic=True, tag="anthropic")}


def _count_tokens(op_id: str) -> dict[str, Any]:
    return {"post": _operation(op_id, "Estimate a message's input tokens", body="CountTokensRequest",
                               ok=_json("TokenCount"), errors=(400, 401, 403, 404, 429, 503), anthropic=True,
                               tag="anthropic")}


def _public(op_id: str, summary: str, ok: dict[str, Any], *extra: int) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": "OK", "headers": _REQUEST_ID, "content": ok}}
    for status in extra:
        responses[str(status)] = {"description": "Not ready: a check failed", "headers": _REQUEST_ID,
                                  "content": ok}
    return {"get": {"operationId": op_id, "summary": summary, "tags": ["meta"], "security": [],
                    "responses": responses}}


def _metrics() -> dict[str, Any]:
    """``GET /metrics`` (switchyard.telemetry): loopback callers need no key; with ``metrics.access: key``, a bearer
    key."""
    error = {"headers": _REQUEST_ID, "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/OpenAIError"}}}}
    return {"get": {
        "operationId": "metrics", "summary": "Prometheus metrics (text exposition format)", "tags": ["meta"],
        "security": [{}, {"bearer": []}],
        "responses": {
            "200": {"description": "OK", "headers": _REQUEST_ID, "content": {"text/plain": {"schema": {
                "type": "string"}}}},
            "401": {"description": "metrics.access: key, and no key sent", **error},
            "403": {"description": "Not a loopback caller, or not the metrics key", **error},
            "404": {"description": "Metrics are off (metrics.enabled: false)", **error},
        }}}


_FB_RID = {"type": "string", "minLength": 1, "maxLength": 255,
           "description": "the call's x-request-id (ours, or the one the caller sent)"}
_FB_COMMENT = {"type": "string", "maxLength": 4000}
_FEEDBACK_REQUEST = {"oneOf": [  # exactly the shapes governance/feedback.py takes
    _obj(["request_id", "score"], {"request_id": _FB_RID, "score": {"type": "number", "minimum": 0, "maximum": 1},
                                   "comment": _FB_COMMENT}, closed=True),
    _obj(["request_id", "label"], {"request_id": _FB_RID, "comment": _FB_COMMENT, "label": {
        "anyOf": [{"type": "boolean"}, {"type": "string", "enum": sorted(GOOD_LABELS | BAD_LABELS)}],
        "description": "true/false, good/bad, pass/fail, ..."}}, closed=True),
    _obj(["request_id", "metric", "value"], {
        "request_id": _FB_RID, "comment": _FB_COMMENT,
        "metric": {"type": "string", "description": "a metric declared under prompts.metrics"},
        "value": {"type": ["boolean", "number"], "description": "the metric's value (boolean, or within its range)"}},
        closed=True),
], "description": "a score (in [0, 1]), a label, or a declared metric's value"}
_FEEDBACK = {"type": "object", "required": ["object", "request_id"], "properties": {
    "object": _const("feedback"), "request_id": STRING}, "additionalProperties": True}


def _feedback() -> dict[str, Any]:
    """``POST /v1/feedback`` (server/feedback_routes.py): a 202 when a metric's value is kept pending."""
    op = _operation("createFeedback", "Rate one of the key's own requests", body="FeedbackRequest",
                    ok=_json("Feedback"), errors=(400, 401, 404, 503))
    op["responses"]["404"]["description"] = "No request of this key with that id (another key's is the same 404)"
    op["responses"]["202"] = {"description": "Accepted as pending: the call's record is not stored yet",
                              "headers": _REQUEST_ID, "content": _json("Feedback")}
    return {"post": op}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the data plane: every path that ``server.app`` serves outside ``/admin``."""
    paths: dict[str, Any] = {
        "/v1/chat/completions": _chat("createChatCompletion"),
        "/chat/completions": _chat("createChatCompletionUnprefixed"),
        "/v1/embeddings": _embeddings("createEmbedding"),
        "/embeddings": _embeddings("createEmbeddingUnprefixed"),
        "/v1/models": {"get": _operation("listModels", "The models the key may use", body=None,
                                         ok=_json("ModelList"), errors=_READ_ERRORS)},
        "/v1/models/{model}": {"get": _operation(
            "retrieveModel", "One model the key may use", body=None, ok=_json("Model"), errors=(*_READ_ERRORS, 404),
            params=[{"name": "model", "in": "path", "required": True, "schema": STRING,
                     "description": "a deployment or route name (it may contain '/')"}])},
        "/v1/me": {"get": _operation("getMe", "The calling key: its models, rate limits, and each budget's spent, "
                                     "held, remaining and reset time", body=None,
                                     ok={"application/json": {"schema": {"type": "object"}}},
                                     errors=_READ_ERRORS)},
        "/v1/messages": _messages("createMessage"),
        "/messages": _messages("createMessageUnprefixed"),
        "/v1/messages/count_tokens": _count_tokens("countMessageTokens"),
        "/messages/count_tokens": _count_tokens("countMessageTokensUnprefixed"),
        "/health/live": _public("live", "The process is up", _json("Live")),
        "/health/ready": _public("ready", "Started, and the store answers", _json("Ready"), 503),
        "/v1/openapi.json": _public("openapi", "This document", {"application/json": {"schema": {
            "type": "object"}}}),
        "/metrics": _metrics(),
        **openapi_conversations.paths(),
        **openapi_responses.paths(_operation, _json, _sse, _CALL_ERRORS, _READ_ERRORS),
        "/v1/feedback": _feedback(),
        **docs_routes.openapi_paths(_REQUEST_ID, {"application/json": {"schema": _ref("OpenAIError")}}),
    }
    schemas: dict[str, Schema] = {
        "ChatCompletionRequest": CHAT_REQUEST, "ChatMessage": CHAT_MESSAGE, "ChatCompletion": CHAT_COMPLETION,
        "EmbeddingRequest": EMBEDDING_REQUEST, "EmbeddingList": EMBEDDING_LIST,
        "Model": MODEL, "ModelList": MODEL_LIST, "OpenAIError": OPENAI_ERROR,
        "MessageRequest": _messages_request(False), "CountTokensRequest": _messages_request(True),
        "AnthropicMessage": ANTHROPIC_MESSAGE, "OpaqueBlock": OPAQUE_BLOCK, "Message": ANTHROPIC_REPLY,
        "TokenCount": _obj(["input_tokens"], {"input_tokens": {"type": "integer", "minimum": 0}}),
        "AnthropicError": ANTHROPIC_ERROR, "Live": LIVE, "Ready": READY,
        **openapi_conversations.SCHEMAS, **openapi_responses.SCHEMAS,
        "FeedbackRequest": _FEEDBACK_REQUEST, "Feedback": _FEEDBACK,
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Switchyard data plane", "version": "1",
                 "description": "The OpenAI- and Anthropic-compatible endpoints. Authenticate with "
                                "`Authorization: Bearer <key>` (or, on the Anthropic paths, `x-api-key: <key>`). "
                                "The admin API has its own document at /admin/openapi.json."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}}},
    }
