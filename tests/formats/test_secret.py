"""LAUNCH_SECRET's packet header and the OVMF secret table (layout per sevctl's KAT)."""

from __future__ import annotations

import base64
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sevlaunch.errors import FormatError
from sevlaunch.formats import SecretEntry, SecretHeader, SecretTable, resolve_guid
from sevlaunch.formats.secret import LUKS_KEY_GUID, SECRET_TABLE_GUID, guid_alias
from tests.strategies import mutated, parse_or_error, secret_headers, secret_tables

SEVCTL_HEADER = "AAAAAKxUdO1N0yx9mJ7FI9klWey8FSzeYQ4X8K71VzNKLU/KQsIsQxLjtbhaPUewqshX5Q=="


def test_sevctl_header_parses() -> None:
    data = base64.b64decode(SEVCTL_HEADER)
    header = SecretHeader.from_bytes(data)
    assert header.flags == 0
    assert header.iv == base64.b64decode("rFR07U3TLH2YnsUj2SVZ7A==")
    assert header.to_bytes() == data


def test_one_secret_table_layout() -> None:
    table = SecretTable((SecretEntry(LUKS_KEY_GUID, b"MY-LUKS-PASSPHRASE"),))
    data = table.to_bytes()
    # sevctl: 64-byte table, header length 0x3A, 6 padding bytes.
    assert len(data) == 64
    assert table.length == 0x3A
    assert uuid.UUID(bytes_le=data[:16]) == SECRET_TABLE_GUID
    assert data[16:20] == (0x3A).to_bytes(4, "little")
    assert data[20:36] == LUKS_KEY_GUID.bytes_le
    assert data[36:40] == (20 + 18).to_bytes(4, "little")
    assert data[0x3A:] == bytes(6)
    assert table.get(LUKS_KEY_GUID) == b"MY-LUKS-PASSPHRASE"
    assert table.get(uuid.UUID(int=0)) is None


@given(secret_headers)
@settings(max_examples=200, deadline=None)
def test_header_round_trip(header: SecretHeader) -> None:
    data = header.to_bytes()
    assert len(data) == 52
    assert SecretHeader.from_bytes(data) == header


@given(secret_tables)
@settings(max_examples=200, deadline=None)
def test_table_round_trip(table: SecretTable) -> None:
    data = table.to_bytes()
    assert len(data) % 16 == 0
    assert SecretTable.from_bytes(data) == table
    assert SecretTable.from_bytes(data).to_bytes() == data
    # What follows the table in the guest's area is not part of it.
    assert SecretTable.from_bytes(data + bytes(100)) == table


@given(data=st.data())
@settings(max_examples=400, deadline=None)
def test_fuzz_mutated_tables(data: st.DataObject) -> None:
    sample = data.draw(mutated(data.draw(secret_tables).to_bytes()))
    table = parse_or_error(lambda: SecretTable.from_bytes(sample))
    if isinstance(table, FormatError):
        assert table.structure == "OVMF secret table"
        assert table.field
    else:
        assert table.to_bytes()[: table.length] == sample[: table.length]


@given(st.binary(max_size=80))
@settings(max_examples=300, deadline=None)
def test_fuzz_random_bytes(data: bytes) -> None:
    header = parse_or_error(lambda: SecretHeader.from_bytes(data))
    table = parse_or_error(lambda: SecretTable.from_bytes(data))
    if isinstance(header, FormatError):
        assert header.field == "length"
    else:
        assert header.to_bytes() == data
    if isinstance(table, FormatError):
        assert table.field


def test_bad_entry_length_names_its_offset() -> None:
    data = bytearray(SecretTable((SecretEntry(LUKS_KEY_GUID, b"x" * 10),)).to_bytes())
    data[36:40] = (19).to_bytes(4, "little")
    with pytest.raises(FormatError) as err:
        SecretTable.from_bytes(bytes(data))
    assert (err.value.field, err.value.offset, err.value.value) == ("entry.length", 36, 19)


def test_too_many_entries_are_refused() -> None:
    entries = tuple(SecretEntry(uuid.UUID(int=i), b"") for i in range(65))
    with pytest.raises(FormatError) as err:
        SecretTable(entries)
    assert err.value.field == "entries"
    data = SecretTable(entries[:64]).to_bytes()
    body = data[20:] + entries[64].to_bytes()
    forged = SECRET_TABLE_GUID.bytes_le + (20 + len(body)).to_bytes(4, "little") + body
    with pytest.raises(FormatError, match="more than 64"):
        SecretTable.from_bytes(forged)


def test_header_sizes_are_checked() -> None:
    with pytest.raises(FormatError) as err:
        SecretHeader(0, bytes(15), bytes(32))
    assert err.value.field == "iv"
    with pytest.raises(FormatError) as err:
        SecretHeader(1 << 32, bytes(16), bytes(32))
    assert err.value.field == "flags"


def test_guid_aliases() -> None:
    assert resolve_guid("luks-key") == LUKS_KEY_GUID
    assert resolve_guid(" LUKS-KEY ") == LUKS_KEY_GUID
    assert resolve_guid(str(SECRET_TABLE_GUID)) == SECRET_TABLE_GUID
    assert guid_alias(LUKS_KEY_GUID) == "luks-key"
    assert guid_alias(SECRET_TABLE_GUID) == str(SECRET_TABLE_GUID)
    with pytest.raises(FormatError, match="luks-key"):
        resolve_guid("not-a-guid")
