"""What a mode does to a text: ``redact`` puts ``[EMAIL]`` where an email was; ``mask`` puts ``[EMAIL_1]``, the same
placeholder for the same value throughout one request, and keeps the values (in memory, for that request only) to
put them back into the reply: :meth:`Masker.restore` for a whole text, :class:`StreamRestorer` for a stream whose
placeholders may be split across chunks."""

from __future__ import annotations

import contextlib
import json
import re
from collections import Counter

from .scanner import Scanner
from .types import Entity

_PLACEHOLDER = re.compile(r"\[([A-Z][A-Z_]*?)_(\d+)\]")
_PARTIAL = re.compile(r"\[[A-Z_]*\d*\Z")  # the start of a placeholder, at the end of a text
_MAX_PLACEHOLDER = 32


class Masker:
    """The PII of one request: what was found (``counts``) and, in ``mask`` mode, which value each placeholder
    stands for. ``mode`` is ``detect``, ``redact`` or ``mask`` (``detect`` changes no text). ``seen``: the findings
    of texts scanned before (by another masker of the same request), which are not scanned again; a masker with
    ``seen`` adds its own findings to it."""

    __slots__ = ("by_value", "counts", "mode", "scanner", "seen", "values")

    def __init__(self, scanner: Scanner, mode: str, seen: dict[str, list[Entity]] | None = None) -> None:
        self.scanner = scanner
        self.mode = mode
        self.seen = seen
        self.counts: Counter[str] = Counter()
        self.by_value: dict[tuple[str, str], str] = {}
        self.values: dict[str, str] = {}  # placeholder -> value

    def apply(self, text: str, *, json_text: bool = False) -> str:
        """The text with its PII replaced per the mode (counted either way). ``json_text``: the text is JSON (tool
        call arguments), whose string escapes are undone before a value is kept."""
        seen = self.seen
        if seen is None:
            ents = self.scanner.scan(text)
        else:
            got = seen.get(text)
            if got is None:
                got = seen[text] = self.scanner.scan(text)
            ents = got
        if not ents:
            return text
        for e in ents:
            self.counts[e.type] += 1
        if self.mode not in ("redact", "mask"):
            return text
        out: list[str] = []
        pos = 0
        for e in ents:
            out.append(text[pos:e.start])
            out.append(self._placeholder(e.type, text[e.start:e.end], json_text))
            pos = e.end
        out.append(text[pos:])
        return "".join(out)

    def _placeholder(self, kind: str, value: str, json_text: bool) -> str:
        if self.mode == "redact":
            return f"[{kind}]"
        if json_text and "\\" in value:
            with contextlib.suppress(ValueError):
                value = json.loads(f'"{value}"')
        key = (kind, value)
        ph = self.by_value.get(key)
        if ph is None:
            ph = f"[{kind}_{sum(1 for k in self.by_value if k[0] == kind) + 1}]"
            self.by_value[key] = ph
            self.values[ph] = value
        return ph

    @property
    def masked(self) -> bool:
        """Something was masked: the reply must be restored."""
        return bool(self.values)

    def restore(self, text: str, *, json_text: bool = False) -> str:
        """``text`` with every placeholder of this request replaced by its value (JSON-escaped in JSON text)."""
        if "[" not in text or not self.values:
            return text
        values = self.values

        def back(m: re.Match[str]) -> str:
            v = values.get(m.group())
            if v is None:
                return m.group()
            return json.dumps(v)[1:-1] if json_text else v

        return _PLACEHOLDER.sub(back, text)


class StreamRestorer:
    """Restores one channel of a stream (a choice's text, or one tool call's arguments), holding back the tail of
    a piece that may be the start of a placeholder until the next piece (or the end) completes it."""

    __slots__ = ("held", "json_text", "masker")

    def __init__(self, masker: Masker, json_text: bool = False) -> None:
        self.masker = masker
        self.json_text = json_text
        self.held = ""

    def feed(self, piece: str) -> str:
        s = self.held + piece if self.held else piece
        cut = s.rfind("[")
        if cut >= 0 and len(s) - cut <= _MAX_PLACEHOLDER and _PARTIAL.match(s, cut):
            self.held = s[cut:]
            s = s[:cut]
        else:
            self.held = ""
        return self.masker.restore(s, json_text=self.json_text)

    def flush(self) -> str:
        s, self.held = self.held, ""
        return self.masker.restore(s, json_text=self.json_text)
