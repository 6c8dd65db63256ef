"""The firmware's check of the CPUID page (SNP_LAUNCH_UPDATE with page type CPUID).

AMD's firmware refuses CPUID values it cannot vouch for and writes the values it would accept
back into the page, unencrypted, so the hypervisor can report the difference (QEMU's
``sev_snp_cpuid_report_mismatches``). What it refuses is not published; this model refuses
exactly the bits QEMU strips before building the table for an SNP guest
(``sev_snp_mask_cpuid_features``): the TSC-deadline timer (Fn1 ECX[24]), TSC_ADJUST
(Fn7.0 EBX[1]), the host-only speculation controls Fn7.0 EDX[31:26] and VIRT_SSBD
(Fn8000_0008 EBX[25]). A table QEMU builds therefore passes; any other table that sets them
is corrected and refused.
"""

from __future__ import annotations

from dataclasses import replace

from sevlaunch.formats.snp.cpuid import CpuidEntry, CpuidTable

EAX, EBX, ECX, EDX = range(4)

#: (leaf, subleaf or None for any, register) -> bits the firmware refuses.
REFUSED: dict[tuple[int, int | None, int], int] = {
    (0x1, None, ECX): 1 << 24,
    (0x7, 0, EBX): 1 << 1,
    (0x7, 0, EDX): 0x3F << 26,
    (0x8000_0008, None, EBX): 1 << 25,
}
_NAMES = ("eax", "ebx", "ecx", "edx")


def _accepted(entry: CpuidEntry) -> CpuidEntry:
    values = list(entry.registers())
    for (leaf, sub, reg), bits in REFUSED.items():
        if entry.eax_in == leaf and (sub is None or entry.ecx_in == sub):
            values[reg] &= ~bits
    return replace(entry, **dict(zip(_NAMES, values, strict=True)))


def check(table: CpuidTable) -> CpuidTable | None:
    """None when the firmware accepts ``table``, else the table it would accept."""
    fixed = CpuidTable(tuple(_accepted(e) for e in table.entries))
    return None if fixed == table else fixed
