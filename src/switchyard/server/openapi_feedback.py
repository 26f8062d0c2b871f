"""The ``POST /v1/feedback`` part of the data plane's OpenAPI document (:mod:`.openapi_v1` merges it in): a caller
rates one of its own requests (:mod:`switchyard.governance.feedback`)."""

from __future__ import annotations

from typing import Any

from ..governance.feedback import BAD_LABELS, GOOD_LABELS, MAX_COMMENT

Schema = dict[str, Any]

_TEXT = {400: "Invalid request (the error names the field)", 401: "Missing, wrong, revoked or expired key",
         404: "No such request of this key (another key's is answered the same)",
         429: "Too many failed authentications from this address",
         503: "Feedback needs the store (governance is disabled), or the store is unavailable"}
_REQUEST_ID = {"x-request-id": {"description": "the caller's x-request-id, else the gateway's own id",
                                "required": True, "schema": {"type": "string"}}}
_RID: Schema = {"type": "string", "minLength": 1, "maxLength": 255,
                "description": "the rated call's id: the gateway's x-request-id, or the caller's own"}
_COMMENT: Schema = {"anyOf": [{"type": "string", "maxLength": MAX_COMMENT}, {"type": "null"}]}
_LABEL: Schema = {"anyOf": [{"type": "boolean"}, {"type": "string",
                                                  "enum": sorted(GOOD_LABELS | BAD_LABELS)}]}

SCHEMAS: dict[str, Schema] = {
    "FeedbackRequest": {"oneOf": [
        {"type": "object", "additionalProperties": False, "required": ["request_id", "score"],
         "properties": {"request_id": _RID, "score": {"type": "number", "minimum": 0, "maximum": 1},
                        "label": {"type": "null"}, "comment": _COMMENT}},
        {"type": "object", "additionalProperties": False, "required": ["request_id", "label"],
         "properties": {"request_id": _RID, "label": _LABEL, "score": {"type": "null"}, "comment": _COMMENT}},
    ], "description": "exactly one of score (in [0, 1]) and label (true/false, or good/bad and their synonyms)"},
    "Feedback": {"type": "object", "required": ["object", "request_id", "score", "stored"], "properties": {
        "object": {"type": "string", "const": "feedback"}, "request_id": {"type": "string"},
        "score": {"type": "number"}, "label": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "stored": {"type": "object", "additionalProperties": {"type": "boolean"}}}},
}


def paths() -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": "Stored (a second rating of a request replaces the first)",
                                         "headers": _REQUEST_ID,
                                         "content": {"application/json": {"schema": {
                                             "$ref": "#/components/schemas/Feedback"}}}}}
    for status, text in _TEXT.items():
        responses[str(status)] = {"description": text, "headers": _REQUEST_ID, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/OpenAIError"}}}}
    return {"/v1/feedback": {"post": {
        "operationId": "createFeedback", "summary": "Rate one of this key's requests", "tags": ["feedback"],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "$ref": "#/components/schemas/FeedbackRequest"}}}},
        "responses": responses}}}
