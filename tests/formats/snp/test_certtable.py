"""Extended-report certificate table: entries and blobs round-trip (GUIDs in RFC 4122 byte
order), padding is ignored, and offsets outside the buffer are refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sevlaunch.errors import FormatError
from sevlaunch.formats.snp import CertTable, CertTableEntry
from sevlaunch.formats.snp.certtable import ARK_GUID, ASK_GUID, VCEK_GUID
from tests.snp_strategies import cert_tables
from tests.strategies import mutated, parse_or_error


@given(cert_tables, st.booleans(), st.data())
@settings(max_examples=150, deadline=None)
def test_round_trip_and_mutations(table: CertTable, pad: bool, data: st.DataObject) -> None:
    raw = table.to_bytes(pad_to_page=pad)
    assert CertTable.from_bytes(raw) == table
    if pad:
        assert len(raw) % 4096 == 0
    bent = data.draw(mutated(raw))
    parsed = parse_or_error(lambda: CertTable.from_bytes(bent))
    assert isinstance(parsed, (FormatError, CertTable))


def test_layout() -> None:
    table = CertTable(
        (
            CertTableEntry(VCEK_GUID, b"vcek"),
            CertTableEntry(ASK_GUID, b"ask"),
            CertTableEntry(ARK_GUID, b"ark"),
        )
    )
    raw = table.to_bytes()
    assert raw[:16] == bytes.fromhex("63da758de6644564adc5f4b93be8accd")
    assert int.from_bytes(raw[16:20], "little") == 4 * 24
    assert raw[3 * 24 : 4 * 24] == bytes(24)
    assert table.find(ASK_GUID) == b"ask"
    assert table.entries[0].name == "vcek"


def test_refusals() -> None:
    raw = bytearray(CertTable((CertTableEntry(VCEK_GUID, b"x" * 8),)).to_bytes())
    raw[16:20] = (8).to_bytes(4, "little")  # points into the table
    with pytest.raises(FormatError, match="after the table"):
        CertTable.from_bytes(bytes(raw))
    with pytest.raises(FormatError):
        CertTable.from_bytes(bytes(10))  # no terminator
