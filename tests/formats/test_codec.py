"""The parsers' field reader: little-endian fields, EFI GUIDs, must-be-zero regions, and every
out-of-range read or wrong size a FormatError naming the structure, field and offset (never
IndexError on hostile bytes)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sevlaunch.errors import FormatError
from sevlaunch.formats._codec import Reader, check_len, le_bytes, le_int

GUID = uuid.UUID("736869e5-84f0-4973-92ec-06879ce3da0b")


@given(st.integers(0, 2**64 - 1))
def test_integers_round_trip_little_endian(value: int) -> None:
    data = le_bytes(value, 8, structure="s", field="f")
    reader = Reader("s", data + b"\xff")
    assert le_int(data) == reader.u64("f", 0) == value
    assert reader.u8("f", 0) == value & 0xFF
    assert reader.u16("f", 0) == value & 0xFFFF
    assert reader.u32("f", 0) == value & 0xFFFF_FFFF


@pytest.mark.parametrize("value", [-1, 1 << 32])
def test_a_value_that_does_not_fit_names_its_field(value: int) -> None:
    with pytest.raises(FormatError) as caught:
        le_bytes(value, 4, structure="header", field="length")
    assert (caught.value.structure, caught.value.field, caught.value.value) == (
        "header",
        "length",
        value,
    )


@given(st.binary(max_size=40), st.integers(-4, 48), st.integers(0, 16))
def test_any_read_is_the_bytes_or_a_format_error(data: bytes, offset: int, size: int) -> None:
    reader = Reader("blob", data)
    if offset >= 0 and offset + size <= len(data):
        assert reader.raw("field", offset, size) == data[offset : offset + size]
        return
    with pytest.raises(FormatError) as caught:
        reader.raw("field", offset, size)
    assert (caught.value.field, caught.value.offset) == ("field", offset)


def test_a_guid_is_read_in_efi_order() -> None:
    assert Reader("table", b"\0" + GUID.bytes_le).guid("guid", 1) == GUID


def test_a_reserved_region_names_its_first_nonzero_byte() -> None:
    reader = Reader("header", bytes(4) + b"\0\0\x07\0")
    reader.zeros("reserved", 0, 4)
    with pytest.raises(FormatError, match=r"byte 0x6 is 0x07") as caught:
        reader.zeros("reserved", 4, 4)
    assert (caught.value.offset, caught.value.value) == (6, 7)


def test_sizes_are_checked_with_the_lengths_named() -> None:
    Reader("s", bytes(4)).expect_size(4)
    Reader("s", bytes(4)).expect_at_least(3)
    with pytest.raises(FormatError, match="expected 5 bytes, got 4"):
        Reader("s", bytes(4)).expect_size(5)
    with pytest.raises(FormatError, match="expected at least 5 bytes, got 4"):
        Reader("s", bytes(4)).expect_at_least(5)
    with pytest.raises(FormatError, match="expected 16 bytes, got 3") as caught:
        check_len("session", "nonce", b"abc", 16)
    assert caught.value.field == "nonce"
    assert Reader("s", b"").fail("f", None, "why", 1).reason == "why"
