"""Guest message header and REPORT/KEY payloads round-trip; the AAD and IV are the bytes
Linux's sev-guest driver uses; hostile bytes give FormatErrors only."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sevlaunch.errors import FormatError
from sevlaunch.formats.snp import (
    KeyRequest,
    KeyResponse,
    MessageHeader,
    MessageType,
    ReportRequest,
    ReportResponse,
)
from tests.snp_strategies import (
    headers,
    key_requests,
    key_responses,
    report_requests,
    report_responses,
)
from tests.strategies import mutated, parse_or_error

PARSERS: list[tuple[st.SearchStrategy[object], Callable[[bytes], object]]] = [
    (headers, MessageHeader.from_bytes),
    (report_requests, ReportRequest.from_bytes),
    (report_responses, ReportResponse.from_bytes),
    (key_requests, KeyRequest.from_bytes),
    (key_responses, KeyResponse.from_bytes),
]


@pytest.mark.parametrize(("strategy", "parse"), PARSERS)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_round_trip_and_mutations(
    strategy: st.SearchStrategy[object], parse: Callable[[bytes], object], data: st.DataObject
) -> None:
    value = data.draw(strategy)
    raw = value.to_bytes()  # type: ignore[attr-defined]
    assert parse(raw) == value
    bent = data.draw(mutated(raw))
    parsed = parse_or_error(lambda: parse(bent))
    if not isinstance(parsed, FormatError) and not isinstance(parsed, MessageHeader):
        assert parsed.to_bytes() == bent  # type: ignore[attr-defined]


def test_header_layout() -> None:
    header = MessageHeader(msg_seqno=1, msg_type=MessageType.REPORT_REQ, msg_size=96)
    raw = header.to_bytes()
    assert len(raw) == 0x60
    assert raw[0x20:0x28] == (1).to_bytes(8, "little")
    assert raw[0x30:0x36] == bytes((1, 1, 0x60, 0, 5, 1))
    assert raw[0x36:0x38] == (96).to_bytes(2, "little")
    assert header.aad() == raw[0x30:]
    assert header.iv() == (1).to_bytes(8, "little") + bytes(4)
    assert MessageHeader.from_bytes(raw + b"payload") == header


def test_header_refusals() -> None:
    raw = bytearray(MessageHeader(msg_seqno=1, msg_type=5, msg_size=96).to_bytes())
    raw[0x32] = 0x50
    with pytest.raises(FormatError, match="hdr_size"):
        MessageHeader.from_bytes(bytes(raw))
    with pytest.raises(FormatError):
        MessageHeader.from_bytes(bytes(0x5F))


def test_report_request_and_response() -> None:
    request = ReportRequest(bytes(range(64)), vmpl=1)
    assert request.to_bytes()[0x40:0x44] == (1).to_bytes(4, "little")
    with pytest.raises(FormatError):
        ReportRequest(bytes(64), vmpl=4)
    failed = ReportResponse(0x16, b"")
    assert ReportResponse.from_bytes(failed.to_bytes()) == failed
    with pytest.raises(FormatError):
        ReportResponse(0, bytes(10))
    key = KeyRequest(guest_field_select=0x3F, launch_mit_vector=1)
    assert len(key.to_bytes()) == 40
    assert len(KeyRequest().to_bytes()) == 32
