"""RegionMemory: the firmware touches only what the request supplied; writes travel back."""

from __future__ import annotations

import pytest

from sevlaunch.errors import AddressError
from sevlaunch.platform.memory import RegionMemory
from sevlaunch.platform.protocol import Region


def test_reads_and_writes_inside_adjacent_regions() -> None:
    mem = RegionMemory((Region(0x1010, b"B" * 16), Region(0x1000, b"A" * 16)))
    assert mem.read(0x1008, 16) == b"A" * 8 + b"B" * 8  # adjacent regions join
    mem.write(0x100C, b"xy")
    mem.write(0x100E, b"zz")
    mem.write(0x101F, b"!")
    assert mem.written() == (Region(0x100C, b"xyzz"), Region(0x101F, b"!"))


@pytest.mark.parametrize(("paddr", "length"), [(0x0FFF, 2), (0x1020, 1), (0x5000, 0x1_0000_0000)])
def test_access_outside_the_regions_raises_address_error(paddr: int, length: int) -> None:
    mem = RegionMemory((Region(0x1000, bytes(32)),))
    with pytest.raises(AddressError, match="did not supply"):
        mem.read(paddr, length)
    with pytest.raises(AddressError):
        mem.write(paddr, bytes(min(length, 64)))
    assert mem.written() == ()


def test_empty_accesses_need_no_memory() -> None:
    mem = RegionMemory()
    assert mem.read(0x1234, 0) == b""
    mem.write(0x1234, b"")
    assert mem.written() == ()
