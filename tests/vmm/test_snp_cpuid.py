"""The CPUID table the VMM hands an SNP guest: QEMU's stripped features are cleared, so the
firmware's CPUID check accepts it as is; the model's signature and the C-bit geometry are in
the leaves a guest reads them from."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sevlaunch.firmware.snp.cpuid_check import check
from sevlaunch.formats.snp.cpuid import CpuidEntry, CpuidTable
from sevlaunch.formats.vmsa import qemu_cpu_signature
from sevlaunch.vmm.snp_cpuid import mask_features, qemu_cpuid_table


@pytest.mark.parametrize("model", ["EPYC-Milan", "EPYC-Genoa"])
def test_the_table_passes_the_firmwares_check_and_carries_the_model(model: str) -> None:
    cpu = qemu_cpu_signature(model)
    table = qemu_cpuid_table(cpu, 51, 1)
    assert check(table) is None
    leaves = {(e.eax_in, e.ecx_in): e for e in table.entries}
    assert leaves[(1, 0)].eax == leaves[(0x8000_0001, 0)].eax == cpu.to_int()
    assert leaves[(0x8000_001F, 0)].ebx == 51 | 1 << 6


def test_unmasked_entries_would_be_refused_and_masking_clears_only_those_bits() -> None:
    raw = CpuidTable(
        (
            CpuidEntry(1, ecx=0xFFFF_FFFF),
            CpuidEntry(7, 0, ebx=0xFFFF_FFFF, edx=0xFFFF_FFFF),
            CpuidEntry(0x8000_0008, ebx=0xFFFF_FFFF),
            CpuidEntry(7, 1, edx=0xFFFF_FFFF),
        )
    )
    fixed = check(raw)
    assert fixed is not None  # the firmware would change them
    assert tuple(mask_features(e) for e in raw.entries) == fixed.entries
    untouched = CpuidEntry(0xD, 0, eax=7)
    assert mask_features(untouched) == untouched
    assert mask_features(replace(untouched, eax_in=1)).ecx == 0
