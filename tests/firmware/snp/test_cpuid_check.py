"""The firmware's CPUID check refuses exactly the bits QEMU strips for SNP guests."""

from __future__ import annotations

from sevlaunch.firmware.snp.cpuid_check import check
from sevlaunch.formats.snp.cpuid import CpuidEntry, CpuidTable


def test_a_table_without_refused_bits_passes() -> None:
    table = CpuidTable((CpuidEntry(1, ecx=0x7ED8320B & ~(1 << 24)), CpuidEntry(7, 1, edx=1 << 26)))
    assert check(table) is None  # Fn7 subleaf 1 is not Fn7.0


def test_refused_bits_are_cleared_and_nothing_else() -> None:
    table = CpuidTable(
        (
            CpuidEntry(1, ecx=0xFFFF_FFFF),
            CpuidEntry(7, 0, ebx=0b11, edx=0xFFFF_FFFF),
            CpuidEntry(0x8000_0008, 0, ebx=0xFFFF_FFFF),
        )
    )
    fixed = check(table)
    assert fixed is not None
    one, seven, eight = fixed.entries
    assert one.ecx == 0xFFFF_FFFF & ~(1 << 24)
    assert (seven.ebx, seven.edx) == (0b01, 0x03FF_FFFF)
    assert eight.ebx == 0xFFFF_FFFF & ~(1 << 25)
