"""The SNP CPUID table: QEMU's SnpCpuidInfo layout, round trips, hostile bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sevlaunch.errors import FormatError
from sevlaunch.formats.snp.cpuid import (
    ENTRY_SIZE,
    MAX_ENTRIES,
    PAGE_SIZE,
    TABLE_SIZE,
    CpuidEntry,
    CpuidTable,
)
from tests.strategies import mutated, parse_or_error, uint

entries = st.builds(
    CpuidEntry, uint(32), uint(32), uint(32), uint(32), uint(32), uint(32), uint(64), uint(64)
)
tables = st.lists(entries, max_size=8).map(lambda e: CpuidTable(tuple(e)))


def test_layout() -> None:
    assert (ENTRY_SIZE, TABLE_SIZE) == (48, 16 + 64 * 48)
    entry = CpuidEntry(0xD, 1, eax=1, ebx=0x240, ecx=3, edx=4, xcr0_in=1, xss_in=0)
    assert entry.to_bytes() == struct.pack("<IIQQIIIIQ", 0xD, 1, 1, 0, 1, 0x240, 3, 4, 0)
    page = CpuidTable((entry,)).to_page()
    assert len(page) == PAGE_SIZE
    assert page[:16] == struct.pack("<IIQ", 1, 0, 0)


@settings(max_examples=60, deadline=None)
@given(table=tables, data=st.data())
def test_round_trip_and_mutations(table: CpuidTable, data: st.DataObject) -> None:
    page = table.to_page()
    assert CpuidTable.from_bytes(page) == table
    assert CpuidTable.from_bytes(page[:TABLE_SIZE]) == table
    result = parse_or_error(lambda: CpuidTable.from_bytes(data.draw(mutated(page))))
    assert isinstance(result, CpuidTable | FormatError)


def test_hostile_counts_and_reserved_bytes() -> None:
    page = bytearray(CpuidTable((CpuidEntry(1),)).to_page())
    page[0:4] = (MAX_ENTRIES + 1).to_bytes(4, "little")
    with pytest.raises(FormatError, match="at most 64"):
        CpuidTable.from_bytes(bytes(page))
    page[0:4] = (1).to_bytes(4, "little")
    page[16 + 40] = 1
    with pytest.raises(FormatError) as info:
        CpuidTable.from_bytes(bytes(page))
    assert info.value.field == "entry.reserved"
    with pytest.raises(FormatError):
        CpuidTable(tuple(CpuidEntry(i) for i in range(MAX_ENTRIES + 1)))
