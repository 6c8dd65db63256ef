"""The platform wire protocol: round trips, framing across arbitrary splits, hostile bytes."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sevlaunch.errors import ProtocolError
from sevlaunch.platform import protocol as p

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
small = st.binary(max_size=64)


@st.composite
def regions(draw: st.DrawFn) -> tuple[p.Region, ...]:
    """Disjoint regions: sorted start offsets with gaps, shuffled."""
    sizes = draw(st.lists(st.integers(0, 48), max_size=5))
    base = draw(st.integers(0, 2**40))
    out, at = [], base
    for size in sizes:
        at += draw(st.integers(0, 64))
        out.append(p.Region(at, draw(st.binary(min_size=size, max_size=size))))
        at += size
    return tuple(draw(st.permutations(out)))


requests = st.one_of(
    st.builds(p.MailboxRequest, u32, small, regions()),
    st.builds(p.ServiceRequest, st.sampled_from(p.ServiceOp)),
    st.builds(p.GuestReadRequest, u32, u64, u32, regions()),
    st.builds(p.GuestWriteRequest, u32, u64, small, regions()),
    st.builds(p.SnpRequest, small, regions()),
)
u8 = st.integers(0, 255)
responses = st.one_of(
    st.builds(p.MailboxReply, u32, small, regions(), st.text(max_size=50)),
    st.builds(p.BlobReply, small, regions()),
    st.builds(p.ProfileReply, st.text(max_size=20), u8, u8, u8, u8, u8, u32, u32),
    st.builds(p.ErrorReply, st.sampled_from(p.ErrorCode), st.text(max_size=100)),
)


def _frames(data: bytes, cuts: list[int]) -> list[p.Frame]:
    decoder, out, last = p.FrameDecoder(), [], 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        decoder.feed(data[last:cut])
        last = cut
        while (fr := decoder.next_frame()) is not None:
            out.append(fr)
    assert decoder.pending == 0
    return out


@given(requests, st.lists(st.integers(0, 10_000), max_size=6))
def test_request_round_trip_across_any_split(request: p.Request, cuts: list[int]) -> None:
    data = p.encode_request(request) * 2
    frames = _frames(data, cuts)
    assert [p.decode_request(f) for f in frames] == [request, request]


@given(responses)
def test_response_round_trip(response: p.Response) -> None:
    (fr,) = _frames(p.encode_response(response), [])
    assert p.decode_response(fr) == response


def test_header_layout_is_little_endian_and_versioned() -> None:
    data = p.encode_request(p.ServiceRequest(p.ServiceOp.ARK))
    assert data == b"SEVP" + bytes([1, 0x04, 0, 0]) + bytes(4)
    mailbox = p.encode_request(p.MailboxRequest(0x30, b"\xaa", (p.Region(0x1000, b"xy"),)))
    assert mailbox[12:] == (
        struct.pack("<I", 0x30) + struct.pack("<I", 1) + b"\xaa"
        + struct.pack("<I", 1) + struct.pack("<QI", 0x1000, 2) + b"xy"
    )  # fmt: skip


def test_long_messages_are_cut_to_the_limit_on_a_character_boundary() -> None:
    (fr,) = _frames(p.encode_response(p.ErrorReply(p.ErrorCode.INTERNAL, "é" * 5000)), [])
    reply = p.decode_response(fr)
    assert isinstance(reply, p.ErrorReply)
    assert reply.message == "é" * (p.MAX_MESSAGE // 2)


@pytest.mark.parametrize(
    ("header", "field"),
    [
        (b"XXXX" + bytes([1, 1, 0, 0]) + bytes(4), "header.magic"),
        (b"SEVP" + bytes([2, 1, 0, 0]) + bytes(4), "header.version"),
        (b"SEVP" + bytes([1, 1, 1, 0]) + bytes(4), "header.flags"),
        (b"SEVP" + bytes([1, 1, 0, 0]) + struct.pack("<I", p.MAX_PAYLOAD + 1), "header.length"),
    ],
)
def test_bad_header_raises_before_any_payload(header: bytes, field: str) -> None:
    decoder = p.FrameDecoder()
    decoder.feed(header)
    with pytest.raises(ProtocolError) as info:
        decoder.next_frame()
    assert info.value.field == field


def test_maximum_payload_is_accepted_in_the_header() -> None:
    header = b"SEVP" + bytes([1, 1, 0, 0]) + struct.pack("<I", p.MAX_PAYLOAD)
    assert p.parse_header(header).length == p.MAX_PAYLOAD


def test_overlapping_regions_are_refused() -> None:
    payload = struct.pack("<II", 1, 0) + struct.pack("<I", 2)
    payload += struct.pack("<QI", 0x1000, 16) + bytes(16) + struct.pack("<QI", 0x100F, 1) + b"x"
    with pytest.raises(ProtocolError, match="overlap"):
        p.decode_request(p.Frame(p.Kind.MAILBOX, payload))


def test_region_count_is_limited_before_reading_regions() -> None:
    payload = struct.pack("<II", 1, 0) + struct.pack("<I", p.MAX_REGIONS + 1)
    with pytest.raises(ProtocolError) as info:
        p.decode_request(p.Frame(p.Kind.MAILBOX, payload))
    assert info.value.field.endswith("regions.count")


def test_region_past_the_address_space_is_refused() -> None:
    with pytest.raises(ProtocolError, match="64-bit"):
        p.Region(2**64 - 1, b"ab")


def test_trailing_bytes_are_refused() -> None:
    good = p.encode_request(p.MailboxRequest(4, bytes(12)))[p.HEADER_SIZE :]
    with pytest.raises(ProtocolError, match="after the last field"):
        p.decode_request(p.Frame(p.Kind.MAILBOX, good + b"\x00"))


def test_truncated_payload_is_refused() -> None:
    good = p.encode_request(p.MailboxRequest(4, bytes(12)))[p.HEADER_SIZE :]
    with pytest.raises(ProtocolError, match="truncated"):
        p.decode_request(p.Frame(p.Kind.MAILBOX, good[:-1]))


def test_unknown_kinds_are_refused() -> None:
    with pytest.raises(ProtocolError) as info:
        p.decode_request(p.Frame(0x42, b""))
    assert info.value.field == "header.kind"
    with pytest.raises(ProtocolError):
        p.decode_response(p.Frame(p.Kind.MAILBOX, b""))


def test_values_that_do_not_fit_are_refused_on_encode() -> None:
    with pytest.raises(ProtocolError, match="command"):
        p.encode_request(p.MailboxRequest(2**32, b""))


@settings(max_examples=300)
@given(st.sampled_from([*p.Kind, 0x42]), st.binary(max_size=200))
def test_hostile_payloads_raise_only_protocol_errors(kind: int, payload: bytes) -> None:
    for decode in (p.decode_request, p.decode_response):
        with contextlib.suppress(ProtocolError):
            decode(p.Frame(kind, payload))


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=300), st.binary(max_size=300).map(lambda b: b"SEVP\x01" + b)))
def test_hostile_streams_raise_only_protocol_errors(data: bytes) -> None:
    decoder = p.FrameDecoder()
    decoder.feed(data)
    try:
        while decoder.next_frame() is not None:
            pass
    except ProtocolError:
        pass
