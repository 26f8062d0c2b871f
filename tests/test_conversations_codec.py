"""The conversation store's neutral codec, the provider view of a history, and the cut at turn boundaries."""

from __future__ import annotations

from switchyard.messages import (
    AudioPart,
    FilePart,
    ImagePart,
    Message,
    ReasoningPart,
    Role,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)
from switchyard.state.codec import for_provider, message_from_json, message_to_json
from switchyard.state.context import cut_for, turn_starts
from switchyard.state.crypto import SealedWithoutKey, Sealer


def sample() -> list[Message]:
    return [
        Message(Role.USER, [TextPart("hi", {"cache_control": {"type": "ephemeral"}}), ImagePart(url="http://x/i.png",
                                                                                                 detail="low"),
                            FilePart(data="QUJD", media_type="application/pdf", filename="a.pdf"),
                            AudioPart("QUJD", "wav")], name="ada"),
        Message(Role.ASSISTANT, [ReasoningPart("think", signature="sig-1"), ReasoningPart(redacted="xyz"),
                                 TextPart("ok"), ToolCallPart("call_1", "f", '{"a": 1}', {"thought": "s"})]),
        Message(Role.TOOL, [ToolResultPart("call_1", [TextPart("42")], is_error=True)]),
    ]


def test_every_part_round_trips() -> None:
    for m in sample():
        assert message_from_json(message_to_json(m)) == m


def test_another_provider_loses_reasoning_and_meta_the_same_keeps_them() -> None:
    msgs = sample()
    origins = [None, "anthropic", None]
    assert for_provider(msgs, origins, "anthropic") == msgs
    other = for_provider(msgs, origins, "gemini")
    assert other[0] == msgs[0]  # the caller's own message is untouched (its cache hint included)
    assert other[1] == Message(Role.ASSISTANT, [TextPart("ok"), ToolCallPart("call_1", "f", '{"a": 1}')])
    assert for_provider(msgs, origins, None)[1] == other[1]  # a mixed plan: dropped too
    only_reasoning = [Message(Role.ASSISTANT, [ReasoningPart("t", signature="s")])]
    assert for_provider(only_reasoning, ["anthropic"], "openai") == []


def test_cuts_fall_on_turn_boundaries() -> None:
    long = "word " * 40
    msgs = [Message(Role.USER, [TextPart(long)]), Message(Role.ASSISTANT, [ToolCallPart("c", "f", "{}")]),
            Message(Role.USER, [ToolResultPart("c", [TextPart(long)])]), Message(Role.ASSISTANT, [TextPart(long)]),
            Message(Role.USER, [TextPart("short")]), Message(Role.ASSISTANT, [TextPart("short")])]
    assert turn_starts(msgs) == [0, 4]
    assert cut_for(msgs, 10_000) == 0
    assert cut_for(msgs, 30) == 4  # the tool result stays with its call: the whole first turn goes
    assert cut_for(msgs, 1) == len(msgs)


def test_sealed_values_are_bound_to_their_place() -> None:
    s = Sealer("a-secret-of-some-length-0123456789")
    blob = s.seal({"a": 1}, b"conv_1/meta")
    assert blob[:1] == b"\x01" and b'"a"' not in blob
    assert s.open(blob, b"conv_1/meta") == {"a": 1}
    import pytest
    from cryptography.exceptions import InvalidTag

    with pytest.raises(InvalidTag):
        s.open(blob, b"conv_2/meta")
    with pytest.raises(SealedWithoutKey):
        Sealer(None).open(blob, b"conv_1/meta")
    assert Sealer(None).open(Sealer(None).seal({"b": 2}, b"x"), b"x") == {"b": 2}
    assert s.open(Sealer(None).seal({"b": 2}, b"x"), b"x") == {"b": 2}  # stored before the key: still reads
