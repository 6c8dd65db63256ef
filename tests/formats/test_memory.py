"""The physical memory model both ends of the emulated PSP share (no firmware needed)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sevlaunch.errors import AddressError
from sevlaunch.formats.memory import ADDRESS_LIMIT, Overlay, SparseMemory, check_range


@given(st.integers(0, 1 << 20), st.binary(max_size=200_000), st.integers(1 << 10, 1 << 16))
def test_sparse_memory_reads_back_what_was_written(paddr: int, data: bytes, page: int) -> None:
    mem = SparseMemory(page_size=page)
    mem.write(paddr, data)
    assert mem.read(paddr, len(data)) == data
    assert mem.read(paddr + len(data), 8) == bytes(8)  # never written: zeros


@pytest.mark.parametrize(("paddr", "length"), [(-1, 1), (0, -1), (ADDRESS_LIMIT - 4, 8)])
def test_outside_the_address_space_is_an_address_error(paddr: int, length: int) -> None:
    with pytest.raises(AddressError):
        check_range(paddr, length)
    with pytest.raises(AddressError):
        SparseMemory().read(paddr, length)


def test_an_overlay_window_is_private_and_bounded() -> None:
    base = SparseMemory()
    base.write(0x1000, b"guest")
    over = Overlay(base, window=0x10_0000, size=0x100)
    over.write(0x10_0000, b"scratch")
    assert over.read(0x1000, 5) == b"guest"
    assert over.read(0x10_0000, 7) == b"scratch"
    assert base.read(0x10_0000, 7) == bytes(7)
    with pytest.raises(AddressError):
        over.write(0x10_00F0, bytes(0x20))  # runs past the window
