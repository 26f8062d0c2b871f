"""A scriptable, recording fake of Amazon Bedrock's runtime (Converse and ConverseStream), an ASGI app.

Contract source: the ``bedrock-runtime`` service model that botocore bundles. The fake holds requests to it:

* every request must carry a valid SigV4 signature: the fake recomputes it with botocore's ``SigV4Auth`` from the
  request as received (raw path, the signed headers, the body) and the test credentials, and answers 403 as AWS
  does when it differs, is scoped to another region or service, or is stale;
* every body is checked by botocore's ``ParamValidator`` against the ``ConverseRequest`` / ``ConverseStreamRequest``
  input shape (with ``modelId`` taken from the path), plus the rules Bedrock adds (roles alternate and start with
  the user, tool blocks need a ``toolConfig``, tool results answer the previous turn's tool uses, image bytes are
  base64 of the declared format, ``maxTokens`` exceeds a thinking budget); a failure is a 400 ValidationException.

Replies follow the ``ConverseResponse`` shape; streams are binary ``application/vnd.amazon.eventstream`` frames
encoded here (:func:`encode_frame`) and decodable by botocore's own event-stream parser. Errors are ``{"message"}``
bodies with an ``x-amzn-errortype`` header. "Tokens" are whitespace-delimited words, as in ``fake_openai``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import functools
import hashlib
import hmac
import json
import re
import struct
import uuid
import zlib
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.session import get_session
from botocore.validate import ParamValidator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .fake_openai import sample_from_schema
from .servers import serve_asgi

__all__ = ["ERRORS", "FakeBedrock", "RecordedRequest", "encode_frame", "event_frame", "exception_frame"]

ACCESS_KEY = "AKIDFAKEBEDROCK00001"
SECRET_KEY = "fake/secret/key/for/switchyard/tests/0001"
REGION = "us-east-1"
EVENTSTREAM = "application/vnd.amazon.eventstream"
_ERRORTYPE_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
_AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
                   r"/aws4_request, ?SignedHeaders=(?P<signed>[a-z0-9;-]+), ?Signature=(?P<sig>[0-9a-f]{64})$")
_PATH = re.compile(r"^/model/(?P<model>[^/]+)/(?P<op>converse|converse-stream)$")
_MAGIC = {"png": (b"\x89PNG\r\n\x1a\n",), "jpeg": (b"\xff\xd8\xff",), "gif": (b"GIF87a", b"GIF89a"), "webp": (b"RIFF",)}

# error name -> (HTTP status, default message), per the service model's error shapes
ERRORS: dict[str, tuple[int, str]] = {
    "ThrottlingException": (429, "Too many requests, please wait before trying again."),
    "ServiceUnavailableException": (503, "Bedrock is unable to process your request."),
    "ModelErrorException": (424, "The model encountered an error while processing the request."),
    "ModelNotReadyException": (429, "The model is not ready to serve inference requests."),
    "ModelTimeoutException": (408, "Model has timed out in processing the request."),
    "InternalServerException": (500, "The server encountered an internal error."),
    "ValidationException": (400, "The request failed validation (scripted by the fake)."),
    "AccessDeniedException": (403, "You don't have access to the model with the specified model ID."),
    "ResourceNotFoundException": (404, "The requested resource could not be found."),
}
_SIG_MISMATCH = ("The request signature we calculated does not match the signature you provided. Check your AWS "
                 "Secret Access Key and signing method. Consult the service documentation for details.")


# --- event-stream encoding -----------------------------------------------------------------------------------


def encode_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (total length, headers length, CRC32), string headers (type 7), payload,
    and the CRC32 of everything before it."""
    hbytes = b""
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        hbytes += struct.pack(">B", len(n)) + n + b"\x07" + struct.pack(">H", len(v)) + v
    total = 12 + len(hbytes) + len(payload) + 4
    prelude = struct.pack(">II", total, len(hbytes))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + hbytes + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _padded(data: dict[str, Any], seq: int) -> bytes:
    # Bedrock pads each event with a "p" field of varying length so that sizes do not leak content
    return orjson.dumps({**data, "p": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"[: 1 + seq % 30]})


def event_frame(event_type: str, data: dict[str, Any], seq: int = 0) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_frame(headers, _padded(data, seq))


def exception_frame(exception_type: str, message: str) -> bytes:
    """A modelled exception event, e.g. ``throttlingException`` (lower camel case, as the stream union names it)."""
    headers = {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"}
    return encode_frame(headers, orjson.dumps({"message": message}))


# --- the fake ------------------------------------------------------------------------------------------------


@functools.cache
def _input_shapes() -> dict[str, Any]:
    model = get_session().get_service_model("bedrock-runtime")
    return {"converse": model.operation_model("Converse").input_shape,
            "converse-stream": model.operation_model("ConverseStream").input_shape}


class _Invalid(Exception):
    pass


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it (before any check). ``headers`` keys are lower-case."""

    operation: str  # "converse" | "converse-stream"
    model_id: str  # unquoted
    raw_path: str
    headers: dict[str, str]
    json: Any


@dataclass
class _Plan:
    reasoning: str | None
    text: str | None
    tool_uses: list[dict[str, Any]]
    stop_reason: str
    input_tokens: int
    output_tokens: int


def _words(text: str) -> list[str]:
    return re.findall(r"\s*\S+\s*", text)


def _count(text: str) -> int:
    return len(_words(text))


def _error(name: str, message: str | None = None, status: int | None = None) -> Response:
    default_status, default_message = ERRORS.get(name, (400, "Error."))
    headers = {"x-amzn-errortype": name + _ERRORTYPE_SUFFIX, "x-amzn-requestid": str(uuid.uuid4())}
    return Response(orjson.dumps({"message": message or default_message}), status or default_status, headers,
                    "application/json")


def _block_text(block: dict[str, Any]) -> str:
    if "text" in block:
        return str(block["text"])
    if "image" in block:
        src = block["image"]["source"]
        size = len(base64.b64decode(src["bytes"])) if "bytes" in src else 0
        return f"[image {block['image']['format']} {size} bytes]"
    if "document" in block:
        return f"[document {block['document']['format']} {block['document']['name']}]"
    if "toolResult" in block:
        parts = [str(c["text"]) if "text" in c else json.dumps(c.get("json")) for c in block["toolResult"]["content"]]
        return f"[{block['toolResult']['toolUseId']}: {' '.join(parts)}]"
    return ""


@dataclass
class FakeBedrock:
    """State and ASGI app of one fake Bedrock runtime. Mutate it from tests; the server thread reads it."""

    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    session_token: str | None = None
    region: str = REGION
    reply: str | None = None
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    chunk_delay: float = 0.0
    requests: list[RecordedRequest] = field(default_factory=list)
    base_url: str | None = None
    _failures: deque[tuple[str, str | None, int | None]] = field(default_factory=deque)
    _stream_failures: deque[tuple[int, str | None, str]] = field(default_factory=deque)
    _seq: int = 0
    app: Starlette = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.app = Starlette(routes=[Route("/{path:path}", self._endpoint, methods=["GET", "POST", "PUT"])])

    # ----- scripting -------------------------------------------------------------------------------
    def fail_next(self, error: str = "ThrottlingException", message: str | None = None, status: int | None = None,
                  times: int = 1) -> None:
        """Answer the next ``times`` (correctly signed) requests with Bedrock error ``error`` (see ``ERRORS``)."""
        self._failures.extend([(error, message, status)] * times)

    def fail_stream_after(self, n_events: int, exception: str | None = "throttlingException",
                          message: str = "Too many tokens, please wait before trying again.") -> None:
        """The next stream sends ``n_events`` events, then an exception event (or, with None, just ends)."""
        self._stream_failures.append((n_events, exception, message))

    def reset(self) -> None:
        self.requests.clear()
        self._failures.clear()
        self._stream_failures.clear()
        self.reply, self.chunk_delay = None, 0.0
        self.cache_read_tokens = self.cache_write_tokens = 0
        self.session_token = None

    @property
    def last_request(self) -> RecordedRequest:
        return self.requests[-1]

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        with serve_asgi(self.app) as url:
            self.base_url = url
            try:
                yield url
            finally:
                self.base_url = None

    # ----- request handling -------------------------------------------------------------------------
    async def _endpoint(self, request: Request) -> Response:
        raw_path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
        body = await request.body()
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            data = body.decode(errors="replace")
        m = _PATH.match(raw_path)
        self.requests.append(RecordedRequest(m["op"] if m else "", unquote(m["model"]) if m else "", raw_path,
                                             dict(request.headers), data))
        denied = self._check_signature(request, raw_path, body)
        if denied is not None:
            return denied
        if m is None or request.method != "POST":
            return _error("UnknownOperationException", "Unknown operation", 404)
        if self._failures:
            return _error(*self._failures.popleft())
        if not isinstance(data, dict):
            return _error("SerializationException", "Could not parse the request body as JSON.", 400)
        try:
            self._validate(m["op"], unquote(m["model"]), data)
        except _Invalid as e:
            return _error("ValidationException", str(e))
        self._seq += 1
        plan = self._plan(data)
        if m["op"] == "converse":
            return self._converse(plan)
        failure = self._stream_failures.popleft() if self._stream_failures else None
        headers = {"x-amzn-requestid": str(uuid.uuid4())}
        return StreamingResponse(self._frames(plan, failure), 200, headers, EVENTSTREAM)

    def _check_signature(self, request: Request, raw_path: str, body: bytes) -> Response | None:
        def denied(name: str, message: str) -> Response:
            return _error(name, message, 403)

        auth = request.headers.get("authorization")
        if not auth:
            return denied("MissingAuthenticationTokenException", "Missing Authentication Token")
        m = _AUTH.match(auth)
        if m is None:
            return denied("IncompleteSignatureException", "Authorization header requires 'Credential', "
                          "'Signature' and 'SignedHeaders' parameters.")
        if m["key"] != self.access_key:
            return denied("UnrecognizedClientException", "The security token included in the request is invalid.")
        if m["service"] != "bedrock":
            return denied("InvalidSignatureException", "Credential should be scoped to correct service: 'bedrock'.")
        if m["region"] != self.region:
            return denied("InvalidSignatureException", f"Credential should be scoped to a valid region, not "
                          f"'{m['region']}'.")
        signed = m["signed"].split(";")
        amz_date = request.headers.get("x-amz-date", "")
        if "host" not in signed or "x-amz-date" not in signed or not amz_date.startswith(m["date"]):
            return denied("IncompleteSignatureException", "The request must sign host and x-amz-date.")
        try:
            when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        except ValueError:
            return denied("IncompleteSignatureException", "x-amz-date is not a valid timestamp.")
        if abs((dt.datetime.now(dt.UTC) - when).total_seconds()) > 300:
            return denied("InvalidSignatureException", "Signature expired: the request time is too skewed.")
        token = request.headers.get("x-amz-security-token")
        if token != self.session_token or (token is not None and "x-amz-security-token" not in signed):
            return denied("UnrecognizedClientException", "The security token included in the request is invalid.")
        query = request.url.query
        url = f"{request.url.scheme}://{request.headers['host']}{raw_path}" + (f"?{query}" if query else "")
        headers = {h: ",".join(request.headers.getlist(h)) for h in signed}
        aws_request = AWSRequest(method=request.method, url=url, headers=headers, data=body)
        aws_request.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(self.access_key, self.secret_key, self.session_token), "bedrock", self.region)
        canonical = signer.canonical_request(aws_request)
        expected = signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)
        if not hmac.compare_digest(expected, m["sig"]):
            return denied("InvalidSignatureException", _SIG_MISMATCH)
        return None

    # ----- validation -------------------------------------------------------------------------------
    def _validate(self, op: str, model_id: str, data: dict[str, Any]) -> None:
        report = ParamValidator().validate({**data, "modelId": model_id}, _input_shapes()[op])
        if report.has_errors():
            raise _Invalid(report.generate_report())
        messages = data.get("messages") or []
        if not messages:
            raise _Invalid("The messages field is required and must not be empty.")
        has_tools = bool(data.get("toolConfig"))
        previous_uses: set[str] = set()
        for i, msg in enumerate(messages):
            expected = "user" if i % 2 == 0 else "assistant"
            if msg["role"] != expected:
                raise _Invalid("A conversation must start with a user message and alternate between user and "
                               f"assistant roles (messages.{i} is {msg['role']}).")
            uses: set[str] = set()
            for block in msg["content"]:
                if ("toolUse" in block or "toolResult" in block) and not has_tools:
                    raise _Invalid("The toolConfig field must be defined when using toolUse and toolResult "
                                   "content blocks.")
                if "toolUse" in block:
                    uses.add(block["toolUse"]["toolUseId"])
                if "toolResult" in block and block["toolResult"]["toolUseId"] not in previous_uses:
                    raise _Invalid(f"messages.{i}: toolResult {block['toolResult']['toolUseId']} answers no toolUse "
                                   "block of the previous turn.")
                for key in ("image", "document"):
                    if key in block and "bytes" in block[key]["source"]:
                        self._check_bytes(key, block[key])
            previous_uses = uses
        thinking = (data.get("additionalModelRequestFields") or {}).get("thinking")
        max_tokens = (data.get("inferenceConfig") or {}).get("maxTokens")
        budget = int(thinking.get("budget_tokens") or 0) if isinstance(thinking, dict) else 0
        if budget and thinking.get("type") == "enabled" and max_tokens is not None and max_tokens <= budget:
            raise _Invalid("max_tokens must be greater than thinking.budget_tokens")

    @staticmethod
    def _check_bytes(key: str, block: dict[str, Any]) -> None:
        try:
            raw = base64.b64decode(block["source"]["bytes"], validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise _Invalid(f"The {key} bytes are not valid base64.") from None
        if key == "image" and not raw.startswith(_MAGIC.get(block["format"], (b"",))):
            raise _Invalid(f"The provided image does not match the specified image format ({block['format']}).")

    # ----- replies ----------------------------------------------------------------------------------
    def _plan(self, data: dict[str, Any]) -> _Plan:
        messages = data["messages"]
        prompt = " ".join(str(b.get("text", "")) for b in data.get("system") or [])
        prompt += " " + " ".join(_block_text(b) for m in messages for b in m["content"])
        last = messages[-1]["content"]
        answering = any("toolResult" in b for b in last)
        tool_config = data.get("toolConfig") or {}
        choice = tool_config.get("toolChoice") or {"auto": {}}
        tools = [t["toolSpec"] for t in tool_config.get("tools") or [] if "toolSpec" in t]
        thinking = (data.get("additionalModelRequestFields") or {}).get("thinking") or {}
        user_text = " ".join(_block_text(b) for b in last).strip()
        reasoning = f"The user said: {user_text}" if thinking.get("type") == "enabled" else None
        if tools and (not answering or "auto" not in choice):
            if "tool" in choice:
                tools = [t for t in tools if t["name"] == choice["tool"]["name"]] or tools
            uses = [{"toolUseId": f"tooluse_{hashlib.sha1(f'{self._seq}-{i}'.encode()).hexdigest()[:22]}",
                     "name": t["name"], "input": sample_from_schema(t["inputSchema"].get("json") or {})}
                    for i, t in enumerate(tools)]
            out = sum(_count(json.dumps(u["input"])) for u in uses)
            return _Plan(reasoning, None, uses, "tool_use", _count(prompt), out)
        text = self.reply if self.reply is not None else f"Echo: {user_text}"
        stop_reason = "end_turn"
        for stop in (data.get("inferenceConfig") or {}).get("stopSequences") or []:
            if stop and stop in text:
                text, stop_reason = text[: text.index(stop)], "stop_sequence"
        limit = (data.get("inferenceConfig") or {}).get("maxTokens")
        if isinstance(limit, int) and _count(text) > limit:
            text, stop_reason = "".join(_words(text)[:limit]), "max_tokens"
        return _Plan(reasoning, text, [], stop_reason, _count(prompt), _count(text) + _count(reasoning or ""))

    def _usage(self, plan: _Plan) -> dict[str, Any]:
        usage = {"inputTokens": plan.input_tokens, "outputTokens": plan.output_tokens,
                 "totalTokens": plan.input_tokens + plan.output_tokens + self.cache_read_tokens
                 + self.cache_write_tokens}
        if self.cache_read_tokens or self.cache_write_tokens:
            usage["cacheReadInputTokens"] = self.cache_read_tokens
            usage["cacheWriteInputTokens"] = self.cache_write_tokens
        return usage

    @staticmethod
    def _signature(text: str) -> str:
        return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()

    def _converse(self, plan: _Plan) -> Response:
        content: list[dict[str, Any]] = []
        if plan.reasoning is not None:
            content.append({"reasoningContent": {"reasoningText": {"text": plan.reasoning,
                                                                   "signature": self._signature(plan.reasoning)}}})
        if plan.text is not None:
            content.append({"text": plan.text})
        content.extend({"toolUse": u} for u in plan.tool_uses)
        body = {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": plan.stop_reason,
                "usage": self._usage(plan), "metrics": {"latencyMs": 12}}
        return Response(orjson.dumps(body), 200, {"x-amzn-requestid": str(uuid.uuid4())}, "application/json")

    def _events(self, plan: _Plan) -> list[tuple[str, dict[str, Any]]]:
        """The ConverseStream events of a reply, in Bedrock's order (no contentBlockStart for text blocks)."""
        events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
        index = 0
        if plan.reasoning is not None:
            for word in _words(plan.reasoning):
                events.append(("contentBlockDelta", {"contentBlockIndex": index,
                                                     "delta": {"reasoningContent": {"text": word}}}))
            events.append(("contentBlockDelta", {"contentBlockIndex": index, "delta": {
                "reasoningContent": {"signature": self._signature(plan.reasoning)}}}))
            events.append(("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        if plan.text is not None:
            for word in _words(plan.text) or [""]:
                events.append(("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": word}}))
            events.append(("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        for use in plan.tool_uses:
            start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
            events.append(("contentBlockStart", {"contentBlockIndex": index, "start": start}))
            for piece in re.findall(r"\w+|\W+", json.dumps(use["input"])):
                events.append(("contentBlockDelta", {"contentBlockIndex": index,
                                                     "delta": {"toolUse": {"input": piece}}}))
            events.append(("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        events.append(("messageStop", {"stopReason": plan.stop_reason}))
        events.append(("metadata", {"usage": self._usage(plan), "metrics": {"latencyMs": 12}}))
        return events

    async def _frames(self, plan: _Plan, failure: tuple[int, str | None, str] | None) -> AsyncIterator[bytes]:
        for seq, (kind, data) in enumerate(self._events(plan)):
            if failure is not None and seq >= failure[0]:
                if failure[1] is not None:
                    yield exception_frame(failure[1], failure[2])
                return
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            yield event_frame(kind, data, seq)
