"""The PII stages of the request path (declared by ``server/factory.py`` after Record, before Reserve, and only when
the config has a ``pii:`` section).

* :class:`PiiStage` scans every text of the request (:mod:`.walk`) in its ``before``. By the mode (the key's or
  team's ``Principal.pii_mode``, else the config's): ``off`` does nothing; ``detect`` records; ``redact`` and
  ``mask`` rewrite the request, so the upstream never sees a value; ``block`` refuses with a 400
  (:class:`PiiDetected`) naming the types. In every mode but ``off`` it sets ``call.pii_types``, raises
  ``call.data_class`` and puts the counts per type in ``call.decisions["pii"]``. A content payload the Record stage
  kept (a key whose logging mode is ``full``) is rewritten the same way: the audit never keeps a value.
* :class:`PiiMaskStage` does that and puts the values back into the reply: a stream's text and tool call arguments
  (``wrap``, placeholders split across chunks included) and a whole reply (``reply``, which runs after the call is
  recorded, so the record keeps the placeholders). It is the one in the chain when masking is possible (mode
  ``mask``, ``key_modes``, or policies that may ask for a mode); a call that masked nothing has its stream passed
  through untouched.
* Policies may raise the mode (``@pii("<mode>")`` on a permit, docs/policy.md). When the caller's policies can,
  the PII stage (before the Policy stage, which reads ``context.pii`` and the data class) only scans, as in
  ``detect``, and keeps its findings in ``call.pii``; :class:`PiiApply`, right after the Policy stage, applies the
  strictest of the key's mode and the policies' (``call.pii_mode``) with those findings: nothing is scanned twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..classification import highest
from ..errors import InvalidRequest
from ..messages import ChatRequest, ChatResponse, Chunk, EmbeddingRequest, Finish, StreamEvent, TextDelta, ToolCallDelta
from ..stages import CallContext, Outcome, Stage
from .mask import Masker, StreamRestorer
from .scanner import Scanner
from .types import Entity, strictest
from .walk import rewrite_json, rewrite_request, rewrite_response

if TYPE_CHECKING:
    from ..config.pii import PiiConfig


class PiiDetected(InvalidRequest):
    """A request with PII, under mode ``block``: a 400 naming the types found, never the values."""

    code = "pii_detected"


@dataclass(slots=True)
class _Scanned:
    """A request scanned before its policies decided: the mode its key asks for, the findings of each text, and
    the content payload as the Record stage kept it (already scrubbed on the call, in case the call ends first)."""

    mode: str
    seen: dict[str, list[Entity]]
    payload: dict[str, Any] | None


class PiiStage(Stage):
    """Scan, then detect, redact, mask or block (see the module)."""

    name = "PII"

    def __init__(self, config: PiiConfig, scanner: Scanner | None = None) -> None:
        self.config = config
        self.scanner = scanner or Scanner(config.types, phone_regions=config.phone_regions)
        self.key_modes = config.key_modes
        # set by the composition root when a Policy stage and PiiApply follow: whether the call's policies may ask
        # for a PII mode (then this stage only scans, and PiiApply applies the mode once the policies decided)
        self.policy_modes: Callable[[CallContext], bool] | None = None

    def mode_of(self, call: CallContext) -> str:
        p = call.principal
        if self.key_modes and p is not None and p.pii_mode is not None:
            return p.pii_mode
        return self.config.mode

    def before(self, call: CallContext) -> None:
        req = call.request
        if req is None:
            return
        mode = self.mode_of(call)
        if mode != "block" and self.policy_modes is not None and self.policy_modes(call):
            self._scan(call, req, mode)  # block is the strictest: nothing a policy says could change it
        elif mode != "off":
            payload = call.payload
            self.apply(call, req, Masker(self.scanner, mode, {} if payload is not None else None), payload)

    def _scan(self, call: CallContext, req: ChatRequest | EmbeddingRequest, mode: str) -> None:
        """Find the PII (as ``detect`` does: the class is raised, the types recorded), keep the findings for
        :class:`PiiApply`."""
        masker = Masker(self.scanner, "detect", {})
        rewrite_request(req, lambda t, js: masker.apply(t, json_text=js))
        if not masker.counts:
            return
        assert masker.seen is not None
        self._classify(call, masker)
        payload = call.payload
        if payload is not None:  # scrubbed now, in case the call ends before the mode is known (a policy refuses)
            scrub = Masker(self.scanner, "redact", masker.seen)
            call.payload = rewrite_json(payload, lambda t, js: scrub.apply(t))
        call.pii = _Scanned(mode, masker.seen, payload)

    def apply(self, call: CallContext, req: ChatRequest | EmbeddingRequest, masker: Masker,
              payload: dict[str, Any] | None) -> None:
        """Do what ``masker.mode`` says with the request's PII (see the module); ``payload``: the content the
        Record stage kept, to scrub."""
        mode = masker.mode
        changed = rewrite_request(req, lambda t, js: masker.apply(t, json_text=js))
        if not masker.counts:
            return
        self._classify(call, masker)
        if payload is not None:  # what Record kept (logging: full) was read before this stage: scrub it too
            scrub = Masker(self.scanner, "mask" if mode == "mask" else "redact", masker.seen)
            if mode == "mask":
                scrub.by_value, scrub.values = masker.by_value, masker.values  # the same placeholders
            call.payload = rewrite_json(payload, lambda t, js: scrub.apply(t))
        if mode == "block":
            raise PiiDetected(f"The request contains personal data ({', '.join(sorted(masker.counts))}); this "
                              "key may not send it.", param="messages" if call.endpoint == "chat" else "input")
        if changed:
            call.rewrite(req)
        if mode == "mask" and masker.masked:
            self._keep(call, masker)

    def _classify(self, call: CallContext, masker: Masker) -> None:
        """The call's PII types, its data class raised, and the counts per type in its decisions."""
        types = frozenset(masker.counts)
        call.pii_types = types
        cfg = self.config
        raised = highest(*(cfg.type_classes.get(t, cfg.data_class) for t in types))
        call.data_class = highest(call.data_class, raised)
        if call.decisions is None:
            call.decisions = {}
        call.decisions["pii"] = {"mode": masker.mode, "types": dict(sorted(masker.counts.items())),
                                 "data_class": raised}

    def _keep(self, call: CallContext, masker: Masker) -> None:
        """Nothing to keep: this stage cannot restore (the chain has no restoring stage)."""

    def after(self, call: CallContext, outcome: Outcome) -> None:
        # an upstream's error message may quote the request (under detect, with its values): the record, the audit
        # and the request log get it redacted (this runs before the Record stage's after builds the record)
        if call.pii_types and outcome.error:
            outcome.error = Masker(self.scanner, "redact").apply(outcome.error)


class PiiApply(Stage):
    """After the Policy stage: the mode of a request that :class:`PiiStage` only scanned, the strictest of its
    key's (at least ``detect``) and its policies' (``call.pii_mode``), applied with the findings of the scan."""

    name = "PII mode"

    def __init__(self, pii: PiiStage) -> None:
        self.pii = pii

    def before(self, call: CallContext) -> None:
        scanned, req = call.pii, call.request
        if not isinstance(scanned, _Scanned) or req is None:
            return
        call.pii = None
        mode = strictest("detect", scanned.mode, call.pii_mode) or "detect"
        self.pii.apply(call, req, Masker(self.pii.scanner, mode, scanned.seen), scanned.payload)


class PiiMaskStage(PiiStage):
    """:class:`PiiStage`, plus the restoring of masked values in the reply, whole or streamed."""

    def __init__(self, config: PiiConfig, scanner: Scanner | None = None) -> None:
        super().__init__(config, scanner)
        self._maskers: dict[str, Masker] = {}  # by request id, from before to the reply (dropped by after)

    def _keep(self, call: CallContext, masker: Masker) -> None:
        self._maskers[call.request_id] = masker

    def reply(self, call: CallContext, answer: ChatResponse) -> ChatResponse:
        masker = self._maskers.pop(call.request_id, None)
        if masker is not None and rewrite_response(answer, lambda t, js: masker.restore(t, json_text=js)):
            answer.raw = None  # rendered again from the neutral reply, with the values
        return answer

    def wrap(self, call: CallContext, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
        masker = self._maskers.pop(call.request_id, None)
        if masker is None:
            return chunks
        return _restore_stream(masker, chunks)

    def after(self, call: CallContext, outcome: Outcome) -> None:
        # a stream's masker went to its wrap, an answered chat's goes to ``reply`` (after this): drop the others
        if self._maskers and (outcome.status != "ok" or call.endpoint != "chat"):
            self._maskers.pop(call.request_id, None)
        super().after(call, outcome)


async def _restore_stream(masker: Masker, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
    """The stream with its placeholders replaced by their values. Every chunk is rendered from its events (its raw
    upstream frame still says the placeholder); a tail that may be the start of a placeholder waits for the next
    piece of its channel, or the channel's end."""
    channels: dict[tuple[int, int], StreamRestorer] = {}  # (choice, -1): text; (choice, i): tool call i

    def channel(key: tuple[int, int]) -> StreamRestorer:
        r = channels.get(key)
        if r is None:
            r = channels[key] = StreamRestorer(masker, json_text=key[1] >= 0)
        return r

    def flush(choice: int | None) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for key, r in list(channels.items()):
            if (choice is None or key[0] == choice) and r.held:
                rest = r.flush()
                out.append(TextDelta(rest, key[0]) if key[1] < 0 else ToolCallDelta(key[1], rest, key[0]))
        return out

    try:
        async for chunk in chunks:
            events: list[StreamEvent] = []
            for ev in chunk.events:
                if isinstance(ev, TextDelta):
                    text = channel((ev.choice, -1)).feed(ev.text)
                    if text:
                        events.append(TextDelta(text, ev.choice))
                elif isinstance(ev, ToolCallDelta):
                    args = channel((ev.choice, ev.index)).feed(ev.arguments)
                    if args:
                        events.append(ToolCallDelta(ev.index, args, ev.choice))
                elif isinstance(ev, Finish):
                    events.extend(flush(ev.choice))
                    events.append(ev)
                else:
                    events.append(ev)
            yield Chunk(events, chunk.wire, None)
        rest = flush(None)
        if rest:
            yield Chunk(rest, None, None)
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


def pii_stages(config: PiiConfig | None, policies: bool = False) -> list[Stage]:
    """The stage the config asks for: none without a ``pii:`` section; the restoring one when masking is possible
    (``policies``: a Policy stage follows, whose policies may ask for any mode)."""
    if config is None:
        return []
    if config.mode == "mask" or config.key_modes or policies:
        return [PiiMaskStage(config)]
    if config.mode == "off":
        return []
    return [PiiStage(config)]


__all__ = ["PiiApply", "PiiDetected", "PiiMaskStage", "PiiStage", "pii_stages"]
