"""Guest physical memory as the hypervisor holds it: sparse pages, RAM plus a flash window."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sevlaunch.errors import VmmError
from sevlaunch.vmm.memory import FOUR_GIB, PAGE, GuestMemory

RAM = 16 * PAGE


def test_unwritten_memory_reads_as_zeros() -> None:
    memory = GuestMemory(RAM)
    assert memory.read(100, 3 * PAGE) == bytes(3 * PAGE)
    assert not memory.contains(b"\0")  # nothing stored yet


def test_the_flash_window_ends_at_four_gib() -> None:
    memory = GuestMemory(RAM, 2 * PAGE)
    assert memory.flash_base == FOUR_GIB - 2 * PAGE
    memory.write(FOUR_GIB - 16, b"reset vector ...")
    assert memory.read(FOUR_GIB - 16, 16) == b"reset vector ..."


@pytest.mark.parametrize(
    ("paddr", "length"),
    [
        (RAM - 1, 2),  # runs off the end of RAM
        (-1, 1),
        (RAM, 1),  # the hole between RAM and flash
        (FOUR_GIB - 2 * PAGE - 1, 1),  # just below the flash
        (FOUR_GIB - 1, 2),  # past 4 GiB
        (0, -1),
    ],
)
def test_unbacked_ranges_are_refused(paddr: int, length: int) -> None:
    memory = GuestMemory(RAM, 2 * PAGE)
    with pytest.raises(VmmError, match="is not backed by RAM or flash"):
        memory.read(paddr, length)
    if length >= 0:
        with pytest.raises(VmmError, match="is not backed by RAM or flash"):
            memory.write(paddr, bytes(length))


def test_without_flash_the_top_of_the_address_space_is_unbacked() -> None:
    with pytest.raises(VmmError):
        GuestMemory(RAM).read(FOUR_GIB - 16, 16)


def test_contains_finds_needles_across_any_number_of_adjacent_pages() -> None:
    memory = GuestMemory(RAM)
    needle = bytes(range(256)) * 40  # 10240 bytes: spans three pages from PAGE - 10
    memory.write(PAGE - 10, needle)
    assert memory.contains(needle)
    assert memory.contains(needle[5 : PAGE + 20])
    assert not memory.contains(needle + b"\x01")


def test_contains_does_not_join_pages_that_are_not_adjacent() -> None:
    memory = GuestMemory(RAM)
    memory.write(PAGE - 3, b"abc")
    memory.write(3 * PAGE, b"def")
    assert memory.contains(b"abc")
    assert memory.contains(b"def")
    assert not memory.contains(b"abcdef")
    memory.write(PAGE, b"def")  # now the next page does start with it
    assert memory.contains(b"abcdef")


@given(
    writes=st.lists(
        st.tuples(st.integers(0, RAM - 1), st.binary(min_size=1, max_size=3 * PAGE)),
        max_size=8,
    ),
    probe=st.tuples(st.integers(0, RAM - 1), st.integers(0, 2 * PAGE)),
)
def test_reads_see_the_last_write_like_a_flat_array(
    writes: list[tuple[int, bytes]], probe: tuple[int, int]
) -> None:
    memory = GuestMemory(RAM)
    model = bytearray(RAM)
    for paddr, drawn in writes:
        data = drawn[: RAM - paddr]
        memory.write(paddr, data)
        model[paddr : paddr + len(data)] = data
        assert memory.contains(data)
    start, length = probe
    length = min(length, RAM - start)
    assert memory.read(start, length) == bytes(model[start : start + length])
