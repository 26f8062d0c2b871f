"""The Responses API's part of the data plane's OpenAPI document (``openapi_v1``): ``POST /v1/responses``, ``GET``
and ``DELETE /v1/responses/{response_id}``, ``GET /v1/responses/{response_id}/input_items``. The request schema
follows ``protocols.openai_responses`` field by field, as the chat schema follows its adapter."""

from __future__ import annotations

from typing import Any

from ..bounds import MAX_OUTPUT_TOKENS, MAX_TOOLS_OPENAI, MAX_TOP_LOGPROBS

Schema = dict[str, Any]

_STRING: Schema = {"type": "string"}


def _null(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(required: list[str], props: dict[str, Schema], **extra: Any) -> Schema:
    out: Schema = {"type": "object", "properties": props, **extra}
    if required:
        out["required"] = required
    return out


_ROLE = {"type": "string", "enum": ["user", "assistant", "system", "developer"]}
def _kind(*names: str) -> Schema:
    return {"type": "string", "enum": list(names)} if len(names) > 1 else {"type": "string", "const": names[0]}


# a content part, exactly as the parser takes it (protocols/openai_responses.py, _content)
_PART = {"anyOf": [
    _obj(["type", "text"], {"type": _kind("input_text", "output_text", "text", "summary_text", "reasoning_text"),
                            "text": _STRING}),
    _obj(["type", "refusal"], {"type": _kind("refusal"), "refusal": _STRING}),
    _obj(["type", "image_url"], {"type": _kind("input_image"), "image_url": _STRING, "file_id": _null(_STRING),
                                 "detail": _null(_STRING)}),
    _obj(["type", "file_id"], {"type": _kind("input_image"), "file_id": _STRING, "detail": _null(_STRING)}),
    _obj(["type"], {"type": _kind("input_file"), "file_data": _null(_STRING), "file_id": _null(_STRING),
                    "file_url": _null(_STRING), "filename": _null(_STRING)}),
    _obj(["type", "input_audio"], {"type": _kind("input_audio"), "input_audio": _obj(
        ["data", "format"], {"data": _STRING, "format": _STRING})}),
], "description": "a content part: input_text / output_text {text}, refusal {refusal}, input_image {image_url | "
                  "file_id, detail}, input_file {file_data | file_id | file_url, filename}, input_audio "
                  "{input_audio: {data, format}}"}
_CONTENT = {"anyOf": [_STRING, {"type": "array", "items": _PART}]}
_MESSAGE = _obj(["role", "content"], {"type": {"type": "string", "const": "message"}, "role": _ROLE,
                                      "content": _CONTENT})
_ITEM = {"anyOf": [
    _MESSAGE,
    _obj(["type", "call_id", "name"], {"type": {"type": "string", "const": "function_call"}, "call_id": _STRING,
                                       "name": _STRING, "arguments": _null(_STRING)}),
    _obj(["type", "call_id", "output"], {"type": {"type": "string", "const": "function_call_output"},
                                         "call_id": _STRING, "output": _CONTENT}),
    _obj(["type"], {"type": {"type": "string", "not": {"enum": ["message", "function_call", "function_call_output",
                                                                 "item_reference"]}}},
         description="a reasoning item, or an item that only OpenAI's own service runs (kept whole)"),
]}
_TOOL = _obj(["type"], {"type": _STRING, "name": _STRING, "description": _null(_STRING),
                        "parameters": _null({"type": "object"}), "strict": _null({"type": "boolean"})},
             description="a function tool {type: function, name, parameters}; any other type is a built-in tool "
                         "that only an openai deployment with api: responses runs (else a 400 names it)")
_FORMAT = {"anyOf": [
    _obj(["type"], {"type": {"type": "string", "enum": ["text", "json_object"]}}),
    _obj(["type", "name", "schema"], {"type": {"type": "string", "const": "json_schema"}, "name": _STRING,
                                      "schema": {"type": "object"}, "strict": _null({"type": "boolean"}),
                                      "description": _null(_STRING)}),
]}

_PROMPT = {"description": "a Switchyard managed prompt {name, label | version, variables}, rendered by the "
                          "gateway; or OpenAI's stored prompt {id, version, variables}, passed to an openai "
                          "deployment with api: responses (a 400 anywhere else)", "anyOf": [
    _obj(["name"], {"name": _STRING, "label": _STRING, "version": {"type": "integer", "minimum": 1},
                    "variables": {"type": "object"}}),
    _obj(["id"], {"id": _STRING, "version": _null(_STRING), "variables": _null({"type": "object"})}),
]}

RESPONSE_REQUEST: Schema = _obj(["model"], {
    "model": _STRING,
    "input": {"description": "required unless a prompt brings the input",
              "anyOf": [_STRING, {"type": "array", "items": _ITEM}]},
    "prompt": _null(_PROMPT),
    "instructions": _null(_STRING),
    "stream": _null({"type": "boolean"}),
    "stream_options": _null({"type": "object"}),
    "max_output_tokens": _null({"type": "integer", "minimum": 1, "maximum": MAX_OUTPUT_TOKENS}),
    "temperature": _null({"type": "number", "minimum": 0, "maximum": 2}),
    "top_p": _null({"type": "number", "minimum": 0, "maximum": 1}),
    "top_logprobs": _null({"type": "integer", "minimum": 0, "maximum": MAX_TOP_LOGPROBS}),
    "tools": _null({"type": "array", "items": _TOOL, "maxItems": MAX_TOOLS_OPENAI}),
    "tool_choice": _null({"anyOf": [{"type": "string", "enum": ["auto", "none", "required"]},
                                    _obj(["type"], {"type": _STRING, "name": _STRING})]}),
    "parallel_tool_calls": _null({"type": "boolean"}),
    "text": _null(_obj([], {"format": _null(_FORMAT)})),
    "reasoning": _null(_obj([], {"effort": _null(_STRING), "summary": _null(_STRING)})),
    "user": _null(_STRING),
    "metadata": _null({"type": "object", "maxProperties": 16, "additionalProperties": _null(
        {"type": "string", "maxLength": 512}), "propertyNames": {"maxLength": 64}}),
    "previous_response_id": _null(_STRING),
    "conversation": _null({"description": "a stored conversation to continue (needs a state: section): its id, or "
                                          "an object with its id", "anyOf": [
        _STRING, _obj(["id"], {"id": _STRING})]}),
    "store": _null({"type": "boolean"}),
    "include": _null({"type": "array", "items": _STRING}),
    "truncation": _null({"type": "string", "enum": ["auto", "disabled"]}),
    "background": _null({"type": "boolean", "const": False}),
}, description="OpenAI's CreateResponse, as the gateway reads it; other fields pass through to a Responses upstream")
# input, or a prompt that brings it
RESPONSE_REQUEST["anyOf"] = [{"required": ["input"]},
                             {"required": ["prompt"], "properties": {"prompt": {"type": "object"}}}]

RESPONSE: Schema = _obj(["id", "object", "created_at", "status", "output", "model"], {
    "id": _STRING, "object": {"type": "string", "const": "response"}, "created_at": {"type": "number"},
    "status": _STRING, "model": _STRING, "output": {"type": "array", "items": {"type": "object"}},
    "usage": _null({"type": "object"}), "previous_response_id": _null(_STRING), "store": {"type": "boolean"},
    "conversation": _null(_obj(["id"], {"id": _STRING})),
})
RESPONSE_DELETED: Schema = _obj(["id", "object", "deleted"], {
    "id": _STRING, "object": {"type": "string", "const": "response"}, "deleted": {"type": "boolean"}})
ITEM_LIST: Schema = _obj(["object", "data", "has_more"], {
    "object": {"type": "string", "const": "list"}, "data": {"type": "array", "items": {"type": "object"}},
    "first_id": _null(_STRING), "last_id": _null(_STRING), "has_more": {"type": "boolean"}})

SCHEMAS: dict[str, Schema] = {"ResponseRequest": RESPONSE_REQUEST, "Response": RESPONSE,
                              "ResponseDeleted": RESPONSE_DELETED, "ResponseItemList": ITEM_LIST}

_ID = {"name": "response_id", "in": "path", "required": True, "schema": _STRING}
_PAGE = [
    {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
    {"name": "order", "in": "query", "required": False, "schema": {"type": "string", "enum": ["asc", "desc"]}},
    {"name": "after", "in": "query", "required": False, "schema": _STRING},
]


def paths(operation: Any, json: Any, sse: Any, call_errors: tuple[int, ...],
          read_errors: tuple[int, ...]) -> dict[str, Any]:
    """The path items, built with ``openapi_v1``'s own helpers (``operation``, ``json``, ``sse``)."""
    stream = sse("with stream: typed events (response.created ... response.completed), each with its type in "
                 "`event`")

    def create(op_id: str) -> dict[str, Any]:
        return {"post": operation(op_id, "Create a response", body="ResponseRequest",
                                  ok={**json("Response"), **stream}, errors=call_errors)}

    found = (*read_errors, 400, 404)
    return {
        "/v1/responses": create("createResponse"),
        "/responses": create("createResponseUnprefixed"),
        "/v1/responses/{response_id}": {
            "get": operation("getResponse", "A stored response", body=None, ok=json("Response"), errors=found,
                             params=[_ID]),
            "delete": operation("deleteResponse", "Delete a stored response", body=None,
                                ok=json("ResponseDeleted"), errors=found, params=[_ID])},
        "/v1/responses/{response_id}/input_items": {
            "get": operation("listInputItems", "A stored response's input items", body=None,
                             ok=json("ResponseItemList"), errors=found, params=[_ID, *_PAGE])},
    }
