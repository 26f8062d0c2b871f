"""The ``/v1/conversations`` part of the data plane's OpenAPI document (:mod:`.openapi_v1` merges it in): OpenAI's
Conversations API shapes, and the gateway's scratchpad at ``/v1/conversations/{id}/state``."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

_ERRORS = (400, 401, 403, 404, 429, 503)
_TEXT = {400: "Invalid request (the error names the field)", 401: "Missing, wrong, revoked or expired key",
         403: "The key's (or its team's) retention does not allow conversations",
         404: "No such conversation or item for this tenant, or conversations are not enabled (no state: section)",
         429: "Too many failed authentications from this address", 503: "The conversation store is unavailable"}
_REQUEST_ID = {"x-request-id": {"description": "the caller's x-request-id, else the gateway's own id",
                                "required": True, "schema": {"type": "string"}}}
_META = {"type": "object", "maxProperties": 16, "additionalProperties": {"type": "string", "maxLength": 512}}
_ITEM: Schema = {"type": "object", "description": "a Responses API input item: message, function_call, "
                                                  "function_call_output or reasoning",
                 "properties": {"type": {"type": "string"}}}
_OUT_ITEM: Schema = {"type": "object", "required": ["id", "type"],
                     "properties": {"id": {"type": "string"}, "type": {"type": "string"}}}

SCHEMAS: dict[str, Schema] = {
    "Conversation": {"type": "object", "required": ["id", "object", "created_at", "metadata"], "properties": {
        "id": {"type": "string"}, "object": {"type": "string", "const": "conversation"},
        "created_at": {"type": "integer"}, "metadata": {"type": "object"}}},
    "ConversationDeleted": {"type": "object", "required": ["id", "object", "deleted"], "properties": {
        "id": {"type": "string"}, "object": {"type": "string", "const": "conversation.deleted"},
        "deleted": {"type": "boolean"}}},
    "ConversationItem": _OUT_ITEM,
    "ConversationItemList": {"type": "object", "required": ["object", "data", "first_id", "last_id", "has_more"],
                             "properties": {"object": {"type": "string", "const": "list"},
                                            "data": {"type": "array", "items": _OUT_ITEM},
                                            "first_id": {"type": "string"}, "last_id": {"type": "string"},
                                            "has_more": {"type": "boolean"}}},
    "ConversationCreateRequest": {"type": "object", "properties": {
        "items": {"anyOf": [{"type": "array", "maxItems": 20, "items": _ITEM}, {"type": "null"}]},
        "metadata": {"anyOf": [_META, {"type": "null"}]}}},
    "ConversationUpdateRequest": {"type": "object", "required": ["metadata"], "properties": {
        "metadata": {"anyOf": [_META, {"type": "null"}]}}},
    "ConversationItemsRequest": {"type": "object", "required": ["items"], "properties": {
        "items": {"type": "array", "maxItems": 20, "items": _ITEM}}},
    "ConversationState": {"type": "object", "required": ["object", "conversation_id", "scratchpad", "tool_outputs"],
                          "properties": {"object": {"type": "string", "const": "conversation.state"},
                                         "conversation_id": {"type": "string"}, "scratchpad": {"type": "object"},
                                         "tool_outputs": {"type": "array", "items": {"type": "object"}}}},
    "ConversationStateRequest": {"type": "object", "additionalProperties": False, "properties": {
        "scratchpad": {"type": "object", "description": "PUT: replaces it; PATCH: merged (RFC 7396)"},
        "tool_outputs": {"type": "array", "items": {"type": "object"},
                         "description": "PUT: replaces them; PATCH: appended (the newest are kept)"}}},
}


def _ref(name: str) -> Schema:
    return {"$ref": "#/components/schemas/" + name}


def _param(name: str, where: str = "path", schema: Schema | None = None) -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "schema": schema or {"type": "string"}}


def _op(op_id: str, summary: str, ok: str, body: str | None = None,
        params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": "OK", "headers": _REQUEST_ID,
                                         "content": {"application/json": {"schema": _ref(ok)}}}}
    for status in _ERRORS:
        responses[str(status)] = {"description": _TEXT[status], "headers": _REQUEST_ID,
                                  "content": {"application/json": {"schema": _ref("OpenAIError")}}}
    out: dict[str, Any] = {"operationId": op_id, "summary": summary, "tags": ["conversations"],
                           "responses": responses}
    if body is not None:
        out["requestBody"] = {"required": body != "ConversationCreateRequest",
                              "content": {"application/json": {"schema": _ref(body)}}}
    if params:
        out["parameters"] = params
    return out


def paths() -> dict[str, Any]:
    cid = [_param("conversation_id")]
    iid = [*cid, _param("item_id")]
    listing = [*cid, _param("after", "query"), _param("limit", "query", {"type": "integer", "minimum": 1,
                                                                          "maximum": 100}),
               _param("order", "query", {"type": "string", "enum": ["asc", "desc"]})]
    base = "/v1/conversations"
    return {
        base: {"post": _op("createConversation", "Create a conversation", "Conversation",
                           "ConversationCreateRequest")},
        base + "/{conversation_id}": {
            "get": _op("retrieveConversation", "Retrieve a conversation", "Conversation", params=cid),
            "post": _op("updateConversation", "Update a conversation's metadata", "Conversation",
                        "ConversationUpdateRequest", cid),
            "delete": _op("deleteConversation", "Delete a conversation and all it stores", "ConversationDeleted",
                          params=cid)},
        base + "/{conversation_id}/items": {
            "post": _op("createConversationItems", "Add items", "ConversationItemList", "ConversationItemsRequest",
                        cid),
            "get": _op("listConversationItems", "List items", "ConversationItemList", params=listing)},
        base + "/{conversation_id}/items/{item_id}": {
            "get": _op("retrieveConversationItem", "Retrieve an item", "ConversationItem", params=iid),
            "delete": _op("deleteConversationItem", "Delete an item (its stored message)", "Conversation",
                          params=iid)},
        base + "/{conversation_id}/state": {
            "get": _op("getConversationState", "The scratchpad and stored tool outputs", "ConversationState",
                       params=cid),
            "put": _op("putConversationState", "Replace the scratchpad and/or tool outputs", "ConversationState",
                       "ConversationStateRequest", cid),
            "patch": _op("patchConversationState", "Merge the scratchpad, append tool outputs",
                         "ConversationState", "ConversationStateRequest", cid)},
    }
