"""The OVMF footer table: the RHEL 9 AmdSev image's known areas, exact round trips, fuzz."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sevlaunch.errors import FormatError
from sevlaunch.formats import Area, FooterEntry, OvmfFooterTable
from sevlaunch.formats.ovmf import (
    FOOTER_GUID,
    SEV_ES_RESET_BLOCK_GUID,
    SEV_HASH_TABLE_GUID,
    SEV_SECRET_BLOCK_GUID,
)
from tests.strategies import footer_tables, mutated, parse_or_error

OVMF = "sevctl/OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9"


def _image(vectors: Path) -> bytes:
    return (vectors / OVMF).read_bytes()


def test_sevctl_ovmf_footer(vectors: Path) -> None:
    image = _image(vectors)
    table = OvmfFooterTable.from_image(image)
    assert table.sev_es_reset_address == 0x80B004
    assert table.secret_area == Area(0x80C000, 0xC00)
    assert table.hashes_area == Area(0x80CC00, 0x400)
    encoded = table.to_bytes()
    assert encoded == image[-32 - len(encoded) : -32]
    guids = {e.guid for e in table.entries}
    assert {SEV_ES_RESET_BLOCK_GUID, SEV_SECRET_BLOCK_GUID, SEV_HASH_TABLE_GUID} <= guids


def test_image_with_a_prefix_reads_the_same_table(vectors: Path) -> None:
    image = _image(vectors)
    assert OvmfFooterTable.from_image(bytes(8192) + image) == OvmfFooterTable.from_image(image)


@given(footer_tables, st.binary(min_size=32, max_size=32))
@settings(max_examples=200, deadline=None)
def test_round_trip(table: OvmfFooterTable, reset_vector: bytes) -> None:
    encoded = table.to_bytes()
    assert OvmfFooterTable.from_image(encoded + reset_vector) == table
    assert OvmfFooterTable.from_bytes(encoded[:-18]) == table
    assert OvmfFooterTable.from_bytes(encoded[:-18]).to_bytes() == encoded


def test_missing_areas_are_none() -> None:
    table = OvmfFooterTable((FooterEntry(FOOTER_GUID, b""),))
    assert table.secret_area is None
    assert table.hashes_area is None
    assert table.sev_es_reset_address is None


def test_short_area_entry_is_a_format_error() -> None:
    table = OvmfFooterTable((FooterEntry(SEV_SECRET_BLOCK_GUID, b"\x01\x02\x03"),))
    with pytest.raises(FormatError) as err:
        _ = table.secret_area
    assert err.value.field == "length"


def test_not_an_ovmf_image() -> None:
    with pytest.raises(FormatError, match="is this an OVMF image") as err:
        OvmfFooterTable.from_image(bytes(4096))
    assert (err.value.field, err.value.offset) == ("footer.guid", 4096 - 48)


def test_oversized_entry_is_a_format_error() -> None:
    from uuid import UUID

    with pytest.raises(FormatError) as err:
        FooterEntry(UUID(int=1), bytes(70000)).to_bytes()
    assert err.value.field == "entry.length"


def _parse_or_format_error(image: bytes) -> None:
    def parse() -> tuple[object, ...]:
        table = OvmfFooterTable.from_image(image)
        return (table.secret_area, table.hashes_area, table.sev_es_reset_address)

    result = parse_or_error(parse)
    if isinstance(result, FormatError):
        assert result.structure == "OVMF footer table"
        assert result.field


@given(data=st.data())
@settings(max_examples=300, deadline=None)
def test_fuzz_mutated_sevctl_image(vectors: Path, data: st.DataObject) -> None:
    image = _image(vectors)
    # Mutate the last 160 bytes (the table and the reset vector) where the parser looks.
    _parse_or_format_error(image[:-160] + data.draw(mutated(image[-160:])))


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_fuzz_random_bytes(data: bytes) -> None:
    _parse_or_format_error(data)
    result = parse_or_error(lambda: OvmfFooterTable.from_bytes(data))
    if isinstance(result, FormatError):
        assert result.field
