"""``switchyard pii scan``: the PII scanner over JSON lines, for trying the detectors on your own data.

Each input line is ``{"text": "..."}``; each output line is ``{"entities": [{"type", "start", "end"}]}`` with
character offsets into the text, or ``{"error": "..."}`` for a line that is not such an object. Values are never
printed.
"""

from __future__ import annotations

import sys

import click
import orjson

from ..pii.types import BUILTIN_TYPES, PiiConfigError


@click.group()
def pii() -> None:
    """The PII detectors (see docs/pii.md)."""


@pii.command()
@click.option("--types", "types", default=",".join(BUILTIN_TYPES), show_default=True,
              help="Comma-separated PII types to look for.")
@click.option("--phone-regions", default="US,GB,AU,DE,FR", show_default=True,
              help="Where a phone number without a country code may be from.")
def scan(types: str, phone_regions: str) -> None:
    """Read JSON lines {"text": ...} from stdin; write one {"entities": [...]} line per input line."""
    from ..pii.scanner import Scanner

    try:
        scanner = Scanner([t for t in types.split(",") if t.strip()],
                          phone_regions=[r for r in phone_regions.split(",") if r.strip()])
    except PiiConfigError as e:
        raise click.UsageError(str(e)) from None
    out = sys.stdout.buffer
    for n, line in enumerate(sys.stdin.buffer, 1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            out.write(orjson.dumps({"error": f"line {n}: not JSON ({e.msg})"}) + b"\n")
            continue
        text = obj.get("text") if isinstance(obj, dict) else None
        if not isinstance(text, str):
            out.write(orjson.dumps({"error": f'line {n}: expected an object {{"text": "..."}} with a string'}) + b"\n")
            continue
        ents = [e.as_json() for e in scanner.scan(text)]
        out.write(orjson.dumps({"entities": ents}) + b"\n")
    out.flush()
