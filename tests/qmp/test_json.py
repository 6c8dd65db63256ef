"""The stream parser: messages split or joined anywhere, QEMU's texts, and the limits."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sevlaunch.errors import QmpParseError
from sevlaunch.qmp import NEED_DATA, StreamParser

Item = object


def drain(parser: StreamParser) -> list[Item]:
    """Every value and error the parser yields now; errors as ("ERR", desc)."""
    out: list[Item] = []
    while True:
        try:
            value = parser.next()
        except QmpParseError as e:
            out.append(("ERR", e.desc))
            continue
        if value is NEED_DATA:
            return out
        out.append(value)


def feed_all(chunks: list[bytes], **limits: int) -> list[Item]:
    parser = StreamParser(**limits)
    out: list[Item] = []
    for chunk in chunks:
        parser.feed(chunk)
        out += drain(parser)
    return out


MESSAGES = [
    {"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}},
    {"execute": "query-sev", "id": "__qmp#00001"},
    {"execute": "x", "arguments": {"s": 'a"}]{[\\', "n": [1, 2.5, None, True]}, "id": [1]},
]
STREAM = b"".join(json.dumps(m, separators=(",", ":")).encode() for m in MESSAGES)


def test_concatenated_messages_without_separator() -> None:
    assert feed_all([STREAM]) == MESSAGES


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_split_anywhere(cut: int) -> None:
    assert feed_all([STREAM[:cut], STREAM[cut:]]) == MESSAGES


def test_byte_by_byte() -> None:
    assert feed_all([bytes([b]) for b in STREAM]) == MESSAGES


def test_escape_split_across_chunks() -> None:
    assert feed_all([b'{"a": "x\\', b'"y"}']) == [{"a": 'x"y'}]


def test_single_quoted_strings_as_qemu_accepts() -> None:
    assert feed_all([b"{'execute': 'a\\'b\"c'}"]) == [{"execute": "a'b\"c"}]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"garbage ", "JSON parse error, invalid keyword 'garbage'"),
        (b"@", "JSON parse error, stray '@'"),
        (b"}", "JSON parse error, expecting value"),
        (b'{"a" 1}', "JSON parse error, missing : in object pair"),
        (b"{1: 2}", "JSON parse error, key is not a string in object"),
        (b"[1,]", "JSON parse error, expecting value"),
        (b'{"a": NaN}', "JSON parse error, invalid keyword 'NaN'"),
        (b'["\\q"]', "JSON parse error, invalid escape sequence in string"),
        (b'["\xff"]', "JSON parse error, invalid UTF-8 sequence at offset 2"),
    ],
)
def test_errors_carry_qemu_text(data: bytes, expected: str) -> None:
    assert feed_all([data + b' {"ok": 1}']) == [("ERR", expected), {"ok": 1}]


def test_top_level_scalars_are_values() -> None:
    assert feed_all([b'1 "s" null true ']) == [1, "s", None, True]


def test_depth_limit_reported_once_then_recovers() -> None:
    deep = b"[" * 100 + b"]" * 100
    assert feed_all([deep + b"{}"], max_depth=10) == [
        ("ERR", "JSON nesting depth limit exceeded"),
        {},
    ]


def test_size_limit_reported_once_then_recovers() -> None:
    big = b'{"a": "' + b"x" * 5000 + b'"}'
    out = feed_all([big[i : i + 100] for i in range(0, len(big), 100)] + [b"{}"], max_size=1000)
    assert out == [("ERR", "JSON token size limit exceeded"), {}]


def test_memory_stays_bounded_on_endless_input() -> None:
    parser = StreamParser(max_size=4096)
    errors = 0
    parser.feed(b'{"a": "')
    for _ in range(200):
        parser.feed(b"x" * 1000)
        errors += len(drain(parser))
        assert parser.buffered <= 4096 + 1000
    assert errors == 1


def test_unclosed_brackets_stay_bounded() -> None:
    parser = StreamParser(max_size=4096, max_depth=8)
    for _ in range(100):
        parser.feed(b"[" * 1000)
        drain(parser)
        assert parser.buffered <= 1000


def test_huge_integer_is_a_parse_error() -> None:
    assert feed_all([b"[" + b"9" * 5000 + b"]"])[0][0] == "ERR"  # type: ignore[index]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_fuzz_only_typed_errors_and_bounded(chunks: list[bytes]) -> None:
    parser = StreamParser(max_size=256, max_depth=8)
    for chunk in chunks:
        parser.feed(chunk)
        drain(parser)  # any exception but QmpParseError fails the test
        assert parser.buffered <= 256 + 64 + 64


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.dictionaries(st.text(max_size=8), json_values, max_size=4), max_size=4), st.data()
)
def test_fuzz_round_trip_under_any_split(
    values: list[dict[str, object]], data: st.DataObject
) -> None:
    stream = b"".join(json.dumps(v).encode() for v in values)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert feed_all(chunks) == values
