"""A scriptable, recording fake of Google AI's Gemini REST API (an ASGI app) for gateway tests.

Wire format sources: https://ai.google.dev/api/generate-content (GenerateContentRequest, GenerateContentResponse,
``streamGenerateContent`` with ``alt=sse``), https://ai.google.dev/api/caching (Content, Part, Tool, Schema),
https://ai.google.dev/api/embeddings (embedContent, batchEmbedContents), errors as ``google.rpc.Status`` JSON
(https://ai.google.dev/gemini-api/docs/troubleshooting, https://cloud.google.com/apis/design/errors), and
https://ai.google.dev/gemini-api/docs/thought-signatures. Request pieces are validated by parsing them into the
google-genai SDK's pydantic types (``extra='forbid'``, camelCase aliases); every reply is checked with
``types.GenerateContentResponse.model_validate_json`` before it is sent.

Behaviour: the reply is ``"Echo: <last user text>"`` (or ``reply``); when tools are declared and function calling is
not ``NONE`` and the last turn is not a function response, the model calls every allowed function with sample
arguments; a function response turn is answered ``"Got: <responses as JSON>"``. A user text containing
``BLOCK_PROMPT`` is blocked (``promptFeedback.blockReason``, no candidates); one containing ``BLOCK_OUTPUT`` ends in
``finishReason: SAFETY`` with no content. Models named ``gemini-3*`` sign their function calls and text, and reject a
function call turn without a signature, as the real API does; any signature the fake did not issue is "corrupted".
"Tokens" are whitespace-delimited words. Streams are SSE frames ``data: {json}\\r\\n\\r\\n`` with no ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import re
import struct
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pydantic
from google.genai import types
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .fake_openai import RecordedRequest
from .servers import serve_asgi

__all__ = ["BLOCK_OUTPUT", "BLOCK_PROMPT", "FakeGemini", "google_error", "make_fake_gemini"]

BLOCK_PROMPT = "BLOCK_PROMPT"
BLOCK_OUTPUT = "BLOCK_OUTPUT"
SKIP_SIGNATURES = ("skip_thought_signature_validator", "context_engineering_is_the_way_to_go")
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
_MESSAGES = {
    429: "You exceeded your current quota, please check your plan and billing details.",
    500: "An internal error has occurred. Please retry or report in "
         "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
}
_TOP_LEVEL = {"contents", "systemInstruction", "tools", "toolConfig", "safetySettings", "generationConfig",
              "cachedContent"}
_DATA_FIELDS = ("text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
                "codeExecutionResult")
_FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")
_SAFETY = [{"category": c, "probability": "NEGLIGIBLE"} for c in
           ("HARM_CATEGORY_HATE_SPEECH", "HARM_CATEGORY_DANGEROUS_CONTENT", "HARM_CATEGORY_HARASSMENT",
            "HARM_CATEGORY_SEXUALLY_EXPLICIT")]


class Invalid(Exception):
    """A request the real API would refuse with 400 INVALID_ARGUMENT."""


def google_error(status: int, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A ``google.rpc.Status`` error body: ``{"error": {"code", "message", "status", "details"?}}``."""
    err: dict[str, Any] = {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}
    if details:
        err["details"] = details
    return {"error": err}


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status, headers, "application/json; charset=UTF-8")


def _words(text: str) -> list[str]:
    return re.findall(r"\s*\S+\s*", text)


def _count(text: str) -> int:
    return len(_words(text))


def _camel(d: dict[str, Any]) -> dict[str, Any]:
    """The real API takes proto field names in either spelling; we read camelCase."""
    return {re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k): v for k, v in d.items()}


def sample(schema: Any, depth: int = 0) -> Any:
    """A small instance of a Gemini ``Schema`` or a JSON Schema (types in either case)."""
    if not isinstance(schema, dict) or depth > 8:
        return "x"
    if schema.get("enum"):
        return schema["enum"][0]
    if schema.get("anyOf"):
        return sample(schema["anyOf"][0], depth + 1)
    kind = str(schema.get("type") or "").upper()
    if kind == "OBJECT" or "properties" in schema:
        props = schema.get("properties") or {}
        return {k: sample(props.get(k, {}), depth + 1) for k in schema.get("required", list(props))}
    if kind == "ARRAY":
        return [sample(schema.get("items", {}), depth + 1)]
    return {"INTEGER": 1, "NUMBER": 1.5, "BOOLEAN": True}.get(kind, "x")


def _vector(text: str, dims: int) -> list[float]:
    raw = hashlib.shake_128(text.encode()).digest(dims * 2)
    vals = [int.from_bytes(raw[i:i + 2], "little") / 32768 - 1.0 for i in range(0, dims * 2, 2)]
    norm = sum(v * v for v in vals) ** 0.5 or 1.0
    return list(struct.unpack(f"<{dims}f", struct.pack(f"<{dims}f", *(v / norm for v in vals))))


def _check(model: type[pydantic.BaseModel], value: Any, where: str) -> None:
    try:
        model.model_validate_json(orjson.dumps(value))
    except pydantic.ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise Invalid(f"Invalid value at '{where}{'.' + loc if loc else ''}': {first['msg']}") from None


def _schema_ok(schema: Any, where: str) -> None:
    """What the Gemini API (not Vertex) refuses in a function's ``parameters`` beyond the SDK type's checks."""
    if not isinstance(schema, dict):
        return
    if "additionalProperties" in schema or "additional_properties" in schema:
        raise Invalid(f"Invalid JSON payload received. Unknown name \"additionalProperties\" at '{where}': "
                      "Cannot find field.")
    for key in ("properties",):
        for name, sub in (schema.get(key) or {}).items():
            _schema_ok(sub, f"{where}.properties[{name}]")
    _schema_ok(schema.get("items"), f"{where}.items")
    for i, sub in enumerate(schema.get("anyOf") or []):
        _schema_ok(sub, f"{where}.any_of[{i}]")


@dataclass
class FakeGemini:
    """State + ASGI app of one fake upstream. Mutate it from tests; it is read by the server thread."""

    api_key: str | None = "gemini-test-key"  # None accepts any key
    reply: str | None = None
    embedding_dimensions: int = 8
    cached_tokens: int = 0  # reported as cachedContentTokenCount (part of promptTokenCount)
    thoughts_tokens: int = 0  # reported as thoughtsTokenCount even when thoughts are not included
    chunk_delay: float = 0.0
    requests: list[RecordedRequest] = field(default_factory=list)
    base_url: str | None = None
    issued_signatures: set[str] = field(default_factory=set)
    _failures: deque[tuple[int, Any, dict[str, str]]] = field(default_factory=deque)
    _breaks: deque[int] = field(default_factory=deque)
    app: Starlette = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.app = Starlette(routes=[
            Route("/{version}/models/{target}", self._endpoint, methods=["POST"]),
            Route("/{path:path}", self._not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ])

    # ----- scripting -------------------------------------------------------------------------------
    def fail_next(self, status: int, message: str | None = None, *, retry_delay: str | None = None,
                  headers: dict[str, str] | None = None, body: Any = None, times: int = 1) -> None:
        """Fail the next ``times`` requests with a Google error. ``retry_delay`` (``"7s"``) adds a
        ``google.rpc.RetryInfo`` detail, as Gemini sends with 429s; ``body`` replaces the whole body."""
        if body is None:
            details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}] \
                if retry_delay else None
            body = google_error(status, message or _MESSAGES.get(status, "Scripted failure."), details)
        self._failures.extend([(status, body, dict(headers or {}))] * times)

    def break_stream_after(self, n_frames: int, times: int = 1) -> None:
        """The next ``times`` streams send ``n_frames`` frames, then end without a finishReason."""
        self._breaks.extend([n_frames] * times)

    def reset(self) -> None:
        self.requests.clear()
        self._failures.clear()
        self._breaks.clear()
        self.reply, self.chunk_delay, self.cached_tokens, self.thoughts_tokens = None, 0.0, 0, 0

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

    def signature(self) -> str:
        sig = base64.b64encode(b"\x12sig" + uuid.uuid4().bytes).decode()
        self.issued_signatures.add(sig)
        return sig

    # ----- request handling -------------------------------------------------------------------------
    async def _not_found(self, request: Request) -> Response:
        return _json(google_error(404, f"The requested URL {request.url.path} was not found on this server."), 404)

    async def _endpoint(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body: Any = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw.decode(errors="replace")
        self.requests.append(RecordedRequest("POST", request.url.path, dict(request.headers), body, request.url.query))
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        if not key:
            return _json(google_error(403, "Method doesn't allow unregistered callers (callers without established "
                                           "identity). Please use API Key or other form of API consumer identity to "
                                           "call this API."), 403)
        if self.api_key is not None and key != self.api_key:
            info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}
            return _json(google_error(400, "API key not valid. Please pass a valid API key.", [info]), 400)
        if self._failures:
            status, fail_body, headers = self._failures.popleft()
            if isinstance(fail_body, str | bytes):
                return Response(fail_body, status, headers)
            return _json(fail_body, status, headers)
        version, target = request.path_params["version"], request.path_params["target"]
        model, _, method = target.partition(":")
        if version not in ("v1", "v1beta", "v1alpha") or not method:
            return await self._not_found(request)
        embedding_model = "embedding" in model
        known = re.match(r"^(gemini|gemma|learnlm|text-embedding|embedding|gemini-embedding)-", model)
        if not known or embedding_model != (method in ("embedContent", "batchEmbedContents")):
            return _json(google_error(404, f"models/{model} is not found for API version {version}, or is not "
                                           f"supported for {method}. Call ListModels to see the list of available "
                                           "models and their supported methods."), 404)
        if not isinstance(body, dict):
            return _json(google_error(400, "Invalid JSON payload received. Unexpected token."), 400)
        try:
            if method == "generateContent":
                return _json(self._checked(self._generate(_camel(body), model)))
            if method == "streamGenerateContent":
                frames = [self._checked(f) for f in self._stream_frames(_camel(body), model)]
                if request.query_params.get("alt") != "sse":  # without alt=sse the reply is one JSON array
                    return _json(frames)
                return StreamingResponse(self._sse(frames), 200, {"cache-control": "no-cache"}, "text/event-stream")
            if method == "embedContent":
                return _json({"embedding": self._embed_one(_camel(body), "")})
            if method == "batchEmbedContents":
                return _json(self._embed_batch(_camel(body), model))
        except Invalid as e:
            return _json(google_error(400, str(e)), 400)
        return await self._not_found(request)

    @staticmethod
    def _checked(frame: dict[str, Any]) -> dict[str, Any]:
        types.GenerateContentResponse.model_validate_json(orjson.dumps(frame))  # the fake must speak the real shape
        return frame

    async def _sse(self, frames: list[dict[str, Any]]) -> AsyncIterator[bytes]:
        cut = self._breaks.popleft() if self._breaks else None
        for i, frame in enumerate(frames):
            if cut is not None and i >= cut:
                return
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            yield b"data: " + orjson.dumps(frame) + b"\r\n\r\n"

    # ----- validation -------------------------------------------------------------------------------
    def _validate(self, body: dict[str, Any], model: str) -> None:
        for k in body:
            if k not in _TOP_LEVEL:
                raise Invalid(f'Invalid JSON payload received. Unknown name "{k}": Cannot find field.')
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise Invalid("* GenerateContentRequest.contents: contents is not specified")
        for i, c in enumerate(contents):
            self._content(c, f"contents[{i}]", model)
        if "systemInstruction" in body:
            self._content(body["systemInstruction"], "system_instruction", model, system=True)
        declared: set[str] = set()
        for i, tool in enumerate(body.get("tools") or []):
            _check(types.Tool, tool, f"tools[{i}]")
            for j, fd in enumerate(_camel(tool).get("functionDeclarations") or []):
                name = fd.get("name")
                if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
                    raise Invalid(f"* GenerateContentRequest.tools[{i}].function_declarations[{j}].name: Invalid "
                                  "function name. Must start with a letter or an underscore.")
                declared.add(name)
                _schema_ok(fd.get("parameters"), f"tools[{i}].function_declarations[{j}].parameters")
        if "toolConfig" in body:
            _check(types.ToolConfig, body["toolConfig"], "tool_config")
            fcc = _camel(_camel(body["toolConfig"]).get("functionCallingConfig") or {})
            allowed = fcc.get("allowedFunctionNames")
            if allowed and fcc.get("mode") not in ("ANY", "VALIDATED"):
                raise Invalid("* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: "
                              "only allowed when mode is ANY or VALIDATED.")
            for name in allowed or []:
                if name not in declared:
                    raise Invalid(f"* allowed_function_names: {name} is not a declared function.")
        for i, s in enumerate(body.get("safetySettings") or []):
            _check(types.SafetySetting, s, f"safety_settings[{i}]")
        gen = _camel(body.get("generationConfig") or {})
        _check(types.GenerationConfig, gen, "generation_config")
        if "responseSchema" in gen and "responseJsonSchema" in gen:
            raise Invalid("response_schema and response_json_schema cannot both be set.")
        if ("responseSchema" in gen or "responseJsonSchema" in gen) and gen.get("responseMimeType") != \
                "application/json":
            raise Invalid("* GenerateContentRequest.generation_config.response_mime_type: must be application/json "
                          "when a response schema is set.")
        thinking = _camel(gen.get("thinkingConfig") or {})
        if "thinkingBudget" in thinking and "thinkingLevel" in thinking:
            raise Invalid("You can only set either thinking budget or thinking level.")
        if not 1 <= gen.get("candidateCount", 1) <= 8:
            raise Invalid("* GenerateContentRequest.generation_config.candidate_count: must be in [1, 8].")
        if len(gen.get("stopSequences") or []) > 5:
            raise Invalid("* GenerateContentRequest.generation_config.stop_sequences: at most 5 are allowed.")
        if "logprobs" in gen and not gen.get("responseLogprobs"):
            raise Invalid("logprobs is only allowed when response_logprobs is true.")

    def _content(self, c: Any, where: str, model: str, system: bool = False) -> None:
        _check(types.Content, c, where)
        c = _camel(c)
        if not system and c.get("role") not in ("user", "model"):
            raise Invalid(f"* GenerateContentRequest.{where}.role: Please use a valid role: user, model.")
        parts = c.get("parts")
        if not parts:
            raise Invalid(f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.")
        first_call = True
        for j, p in enumerate(_camel(x) for x in parts):
            pw = f"* GenerateContentRequest.{where}.parts[{j}]"
            if sum(k in p for k in _DATA_FIELDS) != 1:
                raise Invalid(f"{pw}.data: required oneof field 'data' must have one initialized field")
            sig = p.get("thoughtSignature")
            if sig is not None and sig not in self.issued_signatures and sig not in SKIP_SIGNATURES:
                raise Invalid(f"{pw}.thought_signature: Corrupted thought signature.")
            blob = _camel(p.get("inlineData") or {})
            if "inlineData" in p and not (blob.get("mimeType") and blob.get("data")):
                raise Invalid(f"{pw}.inline_data: mime_type and data are required.")
            uri = _camel(p.get("fileData") or {}).get("fileUri")
            if "fileData" in p and not str(uri).startswith(("gs://", "https://generativelanguage.googleapis.com/")):
                raise Invalid(f"{pw}.file_data.file_uri: Invalid or unsupported file uri: {uri}")
            fr = p.get("functionResponse")
            if fr is not None and not (fr.get("name") and isinstance(fr.get("response"), dict)):
                raise Invalid(f"{pw}.function_response: name and response are required.")
            fc = p.get("functionCall")
            if fc is not None:
                if c.get("role") != "model":
                    raise Invalid(f"{pw}.function_call: only the model may call functions.")
                if first_call and model.startswith("gemini-3") and sig is None:
                    raise Invalid(f"Function call `{fc.get('name')}` in the `{where}` content block is missing a "
                                  "`thought_signature`.")
                first_call = False

    # ----- generation -------------------------------------------------------------------------------
    def _plan(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        """What every candidate says: ``parts`` (thoughts first), ``finish``, token counts, or a prompt block."""
        self._validate(body, model)
        contents = [_camel(c) for c in body["contents"]]
        parts_of = [[_camel(p) for p in c["parts"]] for c in contents]
        user_texts = [p.get("text", "") for c, ps in zip(contents, parts_of, strict=True) if c["role"] == "user"
                      for p in ps if "text" in p]
        system = [_camel(p).get("text", "") for p in _camel(body.get("systemInstruction") or {}).get("parts", [])]
        prompt = sum(_count(t) for t in [*user_texts, *system]) + sum(
            _count(orjson.dumps(p.get("functionResponse") or p.get("functionCall")).decode())
            for ps in parts_of for p in ps if "functionResponse" in p or "functionCall" in p) + 1
        prompt = max(prompt, self.cached_tokens)
        plan: dict[str, Any] = {"prompt": prompt, "parts": [], "finish": "STOP", "output": 0, "thoughts": 0}
        if any(BLOCK_PROMPT in t for t in user_texts):
            plan["blocked"] = "SAFETY"
            return plan
        last = parts_of[-1] if contents[-1]["role"] == "user" else []
        last_text = " ".join(p["text"] for p in last if "text" in p)
        if BLOCK_OUTPUT in last_text:
            plan["finish"] = "SAFETY"
            return plan
        gen = _camel(body.get("generationConfig") or {})
        thinking = _camel(gen.get("thinkingConfig") or {})
        signs = model.startswith("gemini-3") or bool(thinking)
        if thinking.get("includeThoughts"):
            thought = "Let me think about that."
            plan["parts"].append({"text": thought, "thought": True})
            plan["thoughts"] = _count(thought)
        plan["thoughts"] += self.thoughts_tokens
        fcc = _camel(_camel(body.get("toolConfig") or {}).get("functionCallingConfig") or {})
        decls = [_camel(d) for t in body.get("tools") or [] for d in _camel(t).get("functionDeclarations") or []]
        if fcc.get("allowedFunctionNames"):
            decls = [d for d in decls if d["name"] in fcc["allowedFunctionNames"]]
        responses = [p["functionResponse"] for p in last if "functionResponse" in p]
        if decls and fcc.get("mode") != "NONE" and not responses:
            for k, d in enumerate(decls):
                args = sample(d["parameters"]) if d.get("parameters") else {}
                call: dict[str, Any] = {"functionCall": {"name": d["name"], "args": args}}
                if k == 0 and signs:
                    call["thoughtSignature"] = self.signature()
                plan["parts"].append(call)
                plan["output"] += _count(orjson.dumps(call["functionCall"]).decode())
            return plan
        if responses:
            text = "Got: " + orjson.dumps({r["name"]: r["response"] for r in responses}).decode()
        else:
            text = self.reply if self.reply is not None else f"Echo: {last_text}"
        if self.reply is None and gen.get("responseMimeType") == "application/json":
            schema = gen.get("responseJsonSchema") or gen.get("responseSchema")
            text = orjson.dumps(sample(schema) if schema else {"echo": last_text}).decode()
        for stop in gen.get("stopSequences") or []:
            if stop and stop in text:
                text = text[: text.index(stop)]
        limit = gen.get("maxOutputTokens")
        if isinstance(limit, int) and _count(text) > limit:
            text, plan["finish"] = "".join(_words(text)[:limit]), "MAX_TOKENS"
        part: dict[str, Any] = {"text": text}
        if signs:
            part["thoughtSignature"] = self.signature()
        plan["parts"].append(part)
        plan["output"] = _count(text)
        return plan

    def _usage(self, plan: dict[str, Any], output: int, n: int) -> dict[str, Any]:
        u = {"promptTokenCount": plan["prompt"], "candidatesTokenCount": output * n,
             "cachedContentTokenCount": self.cached_tokens, "thoughtsTokenCount": plan["thoughts"] * n}
        u = {k: v for k, v in u.items() if v}  # proto3 JSON leaves out zeros
        u["totalTokenCount"] = plan["prompt"] + (output + plan["thoughts"]) * n
        return u

    @staticmethod
    def _head(model: str, rid: str) -> dict[str, Any]:
        return {"modelVersion": model, "responseId": rid}

    @staticmethod
    def _logprobs(text: str, top: int) -> dict[str, Any]:
        words = _words(text)
        chosen = [{"token": w, "logProbability": -0.1 * (i % 3 + 1)} for i, w in enumerate(words)]
        tops = [{"candidates": [c, *({"token": f"alt{k}", "logProbability": -5.0 - k} for k in range(1, top))]}
                for c in chosen]
        return {"topCandidates": tops, "chosenCandidates": chosen, "logProbabilitySum": sum(
            c["logProbability"] for c in chosen)}

    def _generate(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        plan = self._plan(body, model)
        rid = uuid.uuid4().hex[:22]
        gen = _camel(body.get("generationConfig") or {})
        n = gen.get("candidateCount", 1)
        if "blocked" in plan:
            return {"promptFeedback": {"blockReason": plan["blocked"], "safetyRatings": _SAFETY},
                    "usageMetadata": self._usage(plan, 0, 0), **self._head(model, rid)}
        candidates = []
        for i in range(n):
            cand: dict[str, Any] = {"finishReason": plan["finish"], "index": i}
            if plan["parts"]:
                cand["content"] = {"parts": plan["parts"], "role": "model"}
            if plan["finish"] == "SAFETY":
                cand["safetyRatings"] = [{**_SAFETY[0], "probability": "HIGH", "blocked": True}]
            text = "".join(p.get("text", "") for p in plan["parts"] if not p.get("thought"))
            if gen.get("responseLogprobs"):
                cand["logprobsResult"] = self._logprobs(text, gen.get("logprobs", 1))
                cand["avgLogprobs"] = -0.2
            candidates.append(cand)
        return {"candidates": candidates, "usageMetadata": self._usage(plan, plan["output"], n),
                **self._head(model, rid)}

    def _stream_frames(self, body: dict[str, Any], model: str) -> list[dict[str, Any]]:
        plan = self._plan(body, model)
        head = self._head(model, uuid.uuid4().hex[:22])
        n = _camel(body.get("generationConfig") or {}).get("candidateCount", 1)
        if "blocked" in plan:
            return [{"promptFeedback": {"blockReason": plan["blocked"], "safetyRatings": _SAFETY},
                     "usageMetadata": self._usage(plan, 0, 0), **head}]
        pieces: list[list[dict[str, Any]]] = []  # the parts of each frame
        for p in plan["parts"]:
            if "text" in p and not p.get("thought"):
                words = _words(p["text"]) or [""]
                for k in range(0, len(words), 2):
                    piece = {"text": "".join(words[k:k + 2])}
                    if k + 2 >= len(words) and "thoughtSignature" in p:  # the signature rides on the last piece
                        piece["thoughtSignature"] = p["thoughtSignature"]
                    pieces.append([piece])
            elif "functionCall" in p and pieces and "functionCall" in pieces[-1][0]:
                pieces[-1].append(p)  # parallel calls arrive together
            else:
                pieces.append([p])
        if not pieces:
            pieces.append([])
        frames: list[dict[str, Any]] = []
        done = 0
        for k, parts in enumerate(pieces):
            done += sum(_count(p.get("text", "")) for p in parts if not p.get("thought"))
            for i in range(n):
                cand: dict[str, Any] = {"index": i} if i else {}
                if parts:
                    cand["content"] = {"parts": parts, "role": "model"}
                if k == len(pieces) - 1:
                    cand["finishReason"] = plan["finish"]
                    done = plan["output"]
                frames.append({"candidates": [cand], "usageMetadata": self._usage(plan, done, n), **head})
        return frames

    # ----- embeddings -------------------------------------------------------------------------------
    def _embed_one(self, req: dict[str, Any], where: str) -> dict[str, Any]:
        _check(types.Content, req.get("content"), f"{where}content")
        texts = [_camel(p).get("text") for p in _camel(req.get("content") or {}).get("parts") or []]
        if not texts or any(not isinstance(t, str) for t in texts):
            raise Invalid(f"* {where}content: only text parts can be embedded.")
        dims = req.get("outputDimensionality") or self.embedding_dimensions
        return {"values": _vector(" ".join(t for t in texts if isinstance(t, str)), dims)}

    def _embed_batch(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        reqs = body.get("requests")
        if not isinstance(reqs, list) or not reqs:
            raise Invalid("* BatchEmbedContentsRequest.requests: requests is not specified")
        out = []
        for i, r in enumerate(_camel(x) for x in reqs):
            if r.get("model") != f"models/{model}":
                raise Invalid(f"* BatchEmbedContentsRequest.requests[{i}].model: must be models/{model}, the model "
                              "in the URL.")
            out.append(self._embed_one(r, f"BatchEmbedContentsRequest.requests[{i}]."))
        return {"embeddings": out}


def make_fake_gemini(**kwargs: Any) -> FakeGemini:
    """Create a fresh fake; keyword arguments set public fields (``api_key``, ``reply``, ``embedding_dimensions``)."""
    return FakeGemini(**kwargs)
