"""Redaction and reversible masking (switchyard.pii.mask), the stream restorer, the config section and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from switchyard.config import ConfigError, parse_config
from switchyard.pii import scanner_for
from switchyard.pii.mask import Masker, StreamRestorer
from tests.support.gateway import base_config

TEXT = "Mail jane@example.com, then bob@example.org, then jane@example.com again; card 4111 1111 1111 1111."


def test_redact_puts_the_type_in_place_of_each_value() -> None:
    m = Masker(scanner_for(), "redact")
    assert m.apply(TEXT) == "Mail [EMAIL], then [EMAIL], then [EMAIL] again; card [CREDIT_CARD]."
    assert dict(m.counts) == {"EMAIL": 3, "CREDIT_CARD": 1}
    assert not m.masked


def test_mask_is_consistent_within_a_request_and_reversible() -> None:
    m = Masker(scanner_for(), "mask")
    out = m.apply(TEXT)
    assert out == "Mail [EMAIL_1], then [EMAIL_2], then [EMAIL_1] again; card [CREDIT_CARD_1]."
    assert m.apply("again: bob@example.org") == "again: [EMAIL_2]"  # the same value in another part
    assert m.restore(out) == TEXT
    assert m.restore("[EMAIL_9] and [NOT_A_TYPE_1] stay") == "[EMAIL_9] and [NOT_A_TYPE_1] stay"


def test_detect_counts_without_changing_the_text() -> None:
    m = Masker(scanner_for(), "detect")
    assert m.apply(TEXT) == TEXT and m.counts["EMAIL"] == 3


def test_values_in_json_text_come_back_json_escaped() -> None:
    m = Masker(scanner_for(), "mask")
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    args = json.dumps({"key": pem, "to": "jane@example.com"})
    masked = m.apply(args, json_text=True)
    assert "BEGIN" not in masked and json.loads(masked) == {"key": "[SECRET_1]", "to": "[EMAIL_1]"}
    assert json.loads(m.restore(masked, json_text=True)) == {"key": pem, "to": "jane@example.com"}
    assert m.restore("[SECRET_1]") == pem  # in plain text, the value itself


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
def test_a_stream_restores_placeholders_split_across_pieces(size: int) -> None:
    m = Masker(scanner_for(), "mask")
    masked = m.apply(TEXT)
    r = StreamRestorer(m)
    pieces = [masked[i:i + size] for i in range(0, len(masked), size)]
    out = "".join(r.feed(p) for p in pieces) + r.flush()
    assert out == TEXT


def test_a_stream_does_not_hold_back_ordinary_brackets() -> None:
    m = Masker(scanner_for(), "mask")
    m.apply("jane@example.com")
    r = StreamRestorer(m)
    assert r.feed("see [the docs] and [") == "see [the docs] and "
    assert r.feed("x] then [EMA") == "[x] then "
    assert r.feed("IL_1].") == "jane@example.com."
    assert r.flush() == ""


def test_the_config_section_rejects_unknown_types_and_classes() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(base_config(pii={"types": ["EMAIL", "PASSPORT"]}), "<test>", {})
    assert "pii.types" in str(e.value.problems) and "PASSPORT" in str(e.value.problems)
    with pytest.raises(ConfigError) as e:
        parse_config(base_config(pii={"data_class": "secretish"}), "<test>", {})
    assert "unknown data class" in str(e.value.problems)
    with pytest.raises(ConfigError) as e:
        parse_config(base_config(pii={"types": ["PERSON"]}), "<test>", {})
    assert "switchyard[presidio]" in str(e.value.problems)
    with pytest.raises(ConfigError):
        parse_config(base_config(pii={"mode": "shred"}), "<test>", {})
    cfg = parse_config(base_config(pii={"mode": "mask", "types": ["email", "secret"],
                                        "type_classes": {"secret": "restricted"}}), "<test>", {})
    assert cfg.pii is not None and cfg.pii.types == ["EMAIL", "SECRET"]
    assert cfg.pii.type_classes == {"SECRET": "restricted"}


def test_switchyard_check_reports_an_unknown_type(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("pii:\n  types: [EMAIL, PASSPORT]\n")
    run = subprocess.run([sys.executable, "-m", "switchyard.cli.main", "check", str(path)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2
    assert "pii.types" in run.stderr and "unknown PII type 'PASSPORT'" in run.stderr


def test_pii_scan_cli_reads_json_lines_and_reports_offsets() -> None:
    lines = [{"text": "write to jane@example.com now"}, "not json", {"text": 3}, {"text": "nothing here"},
             {"text": "Grüße — tfn 123 456 782"}]
    stdin = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    run = subprocess.run([sys.executable, "-m", "switchyard.cli.main", "pii", "scan"], input=stdin,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    out = [json.loads(x) for x in run.stdout.splitlines()]
    assert out[0] == {"entities": [{"type": "EMAIL", "start": 9, "end": 25}]}
    assert "line 2" in out[1]["error"] and "not JSON" in out[1]["error"]
    assert "line 3" in out[2]["error"]
    assert out[3] == {"entities": []}
    assert out[4] == {"entities": [{"type": "AU_TFN", "start": 12, "end": 23}]}  # characters, not bytes
    assert "Traceback" not in run.stderr
