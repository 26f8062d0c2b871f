"""The neutral internal message model.

Inbound protocol adapters (``switchyard.protocols``) parse a client's request into a :class:`ChatRequest`, and
render a :class:`ChatResponse` or a stream of :class:`Chunk` objects back into the client's wire format. Outbound
provider adapters (``switchyard.providers``) turn a :class:`ChatRequest` into an upstream call and the upstream's
reply back into these objects. The two sides meet only here: this module imports nothing of the rest of the
package.

Losslessness: every object that crosses the boundary can carry the original wire object (``raw``) tagged with its
wire format (``wire``). When the client protocol and the provider speak the same wire format, the renderer sends
the raw object back, so fields we do not model survive the round trip. Parts carry opaque ``meta`` for
provider-specific data (an Anthropic thinking signature, ``cache_control``) that a translation must keep.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, TypeAlias

JSON: TypeAlias = Any
"""A value decoded from JSON."""

# Wire formats. A protocol adapter and a provider adapter that share one may pass raw objects through.
WIRE_OPENAI_CHAT = "openai.chat"
WIRE_OPENAI_EMBEDDINGS = "openai.embeddings"
WIRE_ANTHROPIC_MESSAGES = "anthropic.messages"
WIRE_OPENAI_RESPONSES = "openai.responses"


class Role(StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class FinishReason(StrEnum):
    """Why generation stopped, in a vocabulary that every protocol can map to its own."""

    STOP = "stop"  # natural end of turn
    STOP_SEQUENCE = "stop_sequence"  # a caller's stop sequence matched
    LENGTH = "length"  # max tokens reached
    TOOL_CALLS = "tool_calls"
    CONTENT_FILTER = "content_filter"
    REFUSAL = "refusal"
    PAUSE = "pause"  # a long-running server-side turn paused (Anthropic pause_turn)


# --- content parts -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class TextPart:
    text: str
    meta: dict[str, JSON] | None = None
    kind: Literal["text"] = "text"


@dataclass(slots=True)
class ImagePart:
    """An image, given by URL or by base64 data (exactly one of the two)."""

    url: str | None = None
    data: str | None = None  # base64, without a data: prefix
    media_type: str | None = None
    detail: str | None = None  # OpenAI's "auto" | "low" | "high"
    meta: dict[str, JSON] | None = None
    kind: Literal["image"] = "image"


@dataclass(slots=True)
class FilePart:
    """A document (a PDF, say), by URL, base64 data, or a provider file id."""

    data: str | None = None
    url: str | None = None
    file_id: str | None = None
    media_type: str | None = None
    filename: str | None = None
    meta: dict[str, JSON] | None = None
    kind: Literal["file"] = "file"


@dataclass(slots=True)
class AudioPart:
    data: str
    format: str
    meta: dict[str, JSON] | None = None
    kind: Literal["audio"] = "audio"


@dataclass(slots=True)
class ToolCallPart:
    """A model's request to call a tool. ``arguments`` is the JSON text exactly as the model produced it."""

    id: str
    name: str
    arguments: str
    meta: dict[str, JSON] | None = None
    kind: Literal["tool_call"] = "tool_call"


@dataclass(slots=True)
class ToolResultPart:
    tool_call_id: str
    content: list[Part]
    is_error: bool = False
    meta: dict[str, JSON] | None = None
    kind: Literal["tool_result"] = "tool_result"


@dataclass(slots=True)
class ReasoningPart:
    """A model's reasoning. ``signature`` (Anthropic) or ``redacted`` data must round-trip untouched."""

    text: str = ""
    signature: str | None = None
    redacted: str | None = None
    meta: dict[str, JSON] | None = None
    kind: Literal["reasoning"] = "reasoning"


Part: TypeAlias = TextPart | ImagePart | FilePart | AudioPart | ToolCallPart | ToolResultPart | ReasoningPart


@dataclass(slots=True)
class Message:
    role: Role
    parts: list[Part]
    name: str | None = None
    meta: dict[str, JSON] | None = None

    def text(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))


# --- tools and output shaping ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Tool:
    name: str
    description: str | None = None
    parameters: dict[str, JSON] | None = None  # JSON Schema
    strict: bool | None = None
    meta: dict[str, JSON] | None = None


@dataclass(slots=True)
class ToolChoice:
    """``auto``, ``none``, ``required`` (any tool), or ``tool`` (the one named)."""

    mode: Literal["auto", "none", "required", "tool"]
    name: str | None = None


@dataclass(slots=True)
class ResponseFormat:
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema: dict[str, JSON] | None = None
    strict: bool | None = None
    description: str | None = None


# --- requests ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ChatRequest:
    """One chat call, independent of the protocol it came in on.

    ``extra`` holds the top-level fields that the inbound protocol does not model; a provider that speaks the same
    wire format (``wire``) forwards them unchanged, and one that does not ignores them. ``raw`` is the decoded
    client body, kept for lossless pass-through.
    """

    model: str
    messages: list[Message]
    wire: str
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] | None = None
    n: int | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: str | None = None
    reasoning_budget: int | None = None  # Anthropic thinking budget_tokens
    user: str | None = None
    metadata: dict[str, JSON] | None = None
    extra: dict[str, JSON] = field(default_factory=dict)
    raw: dict[str, JSON] | None = None
    # protocol headers of the client's request that a same-wire provider should forward (e.g. ``anthropic-beta``)
    headers: dict[str, str] = field(default_factory=dict)

    def needs(self) -> set[str]:
        """The capabilities that a deployment must have to serve this request."""
        caps: set[str] = set()
        if self.tools:
            caps.add("tools")
        if self.response_format is not None and self.response_format.type != "text":
            caps.add("json")
        for m in self.messages:
            for p in m.parts:
                if isinstance(p, ImagePart):
                    caps.add("vision")
                elif isinstance(p, FilePart):
                    caps.add("files")
                elif isinstance(p, AudioPart):
                    caps.add("audio")
        return caps


@dataclass(slots=True)
class EmbeddingRequest:
    model: str
    input: list[str] | list[list[int]]
    wire: str
    single: bool = False  # the caller sent one string or one token list, not a list of them
    dimensions: int | None = None
    encoding_format: Literal["float", "base64"] | None = None
    user: str | None = None
    extra: dict[str, JSON] = field(default_factory=dict)


# --- replies -------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0  # all prompt tokens, cached ones included
    output_tokens: int = 0  # all completion tokens, reasoning ones included
    cached_tokens: int = 0  # prompt tokens read from a provider's cache
    cache_write_tokens: int = 0  # prompt tokens written to a provider's cache
    reasoning_tokens: int = 0
    # of the cache writes, those to a one-hour cache (Anthropic bills them dearer than the default five-minute
    # ones); priced, not stored apart
    cache_write_1h_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class Choice:
    index: int
    message: Message
    finish_reason: FinishReason | None
    stop_sequence: str | None = None
    logprobs: JSON = None
    refusal: str | None = None


@dataclass(slots=True)
class ChatResponse:
    id: str
    model: str
    created: int
    choices: list[Choice]
    usage: Usage | None
    system_fingerprint: str | None = None
    wire: str | None = None  # the wire format of ``raw``
    raw: dict[str, JSON] | None = None


@dataclass(slots=True)
class Embedding:
    index: int
    vector: list[float] | str  # a base64 string when the caller asked for encoding_format="base64"


@dataclass(slots=True)
class EmbeddingResponse:
    model: str
    data: list[Embedding]
    usage: Usage
    wire: str | None = None
    raw: dict[str, JSON] | None = None


# --- streams -------------------------------------------------------------------------------------------------
#
# A provider yields Chunks. Each holds the neutral events that one upstream frame carried, and that frame itself
# (``raw``, in ``wire`` format) so that a same-format client receives it unchanged. Events of one choice come in
# order; a tool call's ``ToolCallStart`` precedes its ``ToolCallDelta``s.


@dataclass(slots=True)
class StreamStart:
    id: str
    model: str
    created: int
    usage: Usage | None = None  # some providers report prompt tokens up front


@dataclass(slots=True)
class TextDelta:
    text: str
    choice: int = 0


@dataclass(slots=True)
class ReasoningDelta:
    text: str = ""
    signature: str | None = None
    redacted: str | None = None
    choice: int = 0


@dataclass(slots=True)
class ToolCallStart:
    index: int  # position among this choice's tool calls
    id: str
    name: str
    choice: int = 0


@dataclass(slots=True)
class ToolCallDelta:
    index: int
    arguments: str
    choice: int = 0


@dataclass(slots=True)
class LogprobsDelta:
    content: JSON
    choice: int = 0


@dataclass(slots=True)
class Finish:
    reason: FinishReason
    choice: int = 0
    stop_sequence: str | None = None


@dataclass(slots=True)
class UsageUpdate:
    """Usage so far. A later update replaces an earlier one field by field (non-zero fields win)."""

    usage: Usage


StreamEvent: TypeAlias = (
    StreamStart | TextDelta | ReasoningDelta | ToolCallStart | ToolCallDelta | LogprobsDelta | Finish | UsageUpdate
)


@dataclass(slots=True)
class Chunk:
    """Stream events, as one upstream frame brought them (``raw``: that frame), or several frames that arrived
    together (``raw``: the list of them). ``raw`` lets a client of the same wire get the upstream's frames as they
    were; a stage that changes the events sets it to None (or makes a new chunk without it)."""

    events: list[StreamEvent]
    wire: str | None = None
    raw: dict[str, JSON] | list[dict[str, JSON]] | None = None


def merge_usage(into: Usage, update: Usage) -> None:
    """Fold a later usage report into an earlier one: non-zero fields of ``update`` win."""
    if update.input_tokens:
        into.input_tokens = update.input_tokens
    if update.output_tokens:
        into.output_tokens = update.output_tokens
    if update.cached_tokens:
        into.cached_tokens = update.cached_tokens
    if update.cache_write_tokens:
        into.cache_write_tokens = update.cache_write_tokens
    if update.reasoning_tokens:
        into.reasoning_tokens = update.reasoning_tokens
    if update.cache_write_1h_tokens:
        into.cache_write_1h_tokens = update.cache_write_1h_tokens
