"""QEMU's kernel-hashes table: layout, round trips, and strict parsing."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sevlaunch.errors import FormatError
from sevlaunch.formats import KernelHashes
from tests.strategies import kernel_hashes, mutated, parse_or_error


@given(kernel_hashes)
@settings(max_examples=200, deadline=None)
def test_round_trip(hashes: KernelHashes) -> None:
    data = hashes.to_bytes()
    assert len(data) == 176
    assert KernelHashes.from_bytes(data) == hashes
    assert KernelHashes.from_bytes(data[:168]) == hashes


def test_layout() -> None:
    digests = [hashlib.sha256(s).digest() for s in (b"c\0", b"i", b"k")]
    data = KernelHashes(*digests).to_bytes()
    assert uuid.UUID(bytes_le=data[:16]) == uuid.UUID("9438d606-4f22-4cc9-b479-a793d411fd21")
    assert data[16:18] == (168).to_bytes(2, "little")
    for i, guid in enumerate(
        (
            "97d02dd8-bd20-4c94-aa78-e7714d36ab2a",
            "44baf731-3a2f-4bd7-9af1-41e29169781d",
            "4de79437-abd2-427f-b835-d5b172d2045b",
        )
    ):
        entry = data[18 + 50 * i : 68 + 50 * i]
        assert uuid.UUID(bytes_le=entry[:16]) == uuid.UUID(guid)
        assert entry[16:18] == (50).to_bytes(2, "little")
        assert entry[18:] == digests[i]
    assert data[168:] == bytes(8)


@given(data=st.data())
@settings(max_examples=300, deadline=None)
def test_fuzz_mutated_tables(data: st.DataObject) -> None:
    base = data.draw(kernel_hashes).to_bytes()
    sample = data.draw(mutated(base))
    parsed = parse_or_error(lambda: KernelHashes.from_bytes(sample))
    if isinstance(parsed, FormatError):
        assert parsed.structure == "kernel-hashes table"
        assert parsed.field
    else:
        assert parsed.to_bytes()[: len(sample)] == sample


@pytest.mark.parametrize(
    ("offset", "field"),
    [(0, "guid"), (16, "length"), (18, "cmdline.guid"), (84, "initrd.length"), (170, "padding")],
)
def test_errors_name_the_field(offset: int, field: str) -> None:
    data = bytearray(KernelHashes(bytes(32), bytes(32), bytes(32)).to_bytes())
    data[offset] ^= 0x40
    with pytest.raises(FormatError) as err:
        KernelHashes.from_bytes(bytes(data))
    assert err.value.field == field
    assert err.value.offset == offset


def test_digest_sizes_are_checked() -> None:
    with pytest.raises(FormatError) as err:
        KernelHashes(bytes(32), bytes(31), bytes(32))
    assert err.value.field == "initrd"
